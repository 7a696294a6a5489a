// @generated from k8s-pb's prost messages and the OpenAPI definitions by
// `cargo test -p kubesurge-sim messages_table_is_current` with
// KUBESURGE_REGENERATE=1. Do not edit.
//
// Every message the served kinds reach: each prost field, its JSON
// name, and `required` where the schema requires it.

super::json::messages! {
    api::apps::v1::ControllerRevision {
        metadata: "metadata",
        data: "data",
        revision: "revision" required,
    }
    api::apps::v1::ControllerRevisionList {
        metadata: "metadata",
        items: "items" required,
    }
    api::apps::v1::DaemonSet {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    api::apps::v1::DaemonSetCondition {
        r#type: "type" required,
        status: "status" required,
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    api::apps::v1::DaemonSetList {
        metadata: "metadata",
        items: "items" required,
    }
    api::apps::v1::DaemonSetSpec {
        selector: "selector" required,
        template: "template" required,
        update_strategy: "updateStrategy",
        min_ready_seconds: "minReadySeconds",
        revision_history_limit: "revisionHistoryLimit",
    }
    api::apps::v1::DaemonSetStatus {
        current_number_scheduled: "currentNumberScheduled" required,
        number_misscheduled: "numberMisscheduled" required,
        desired_number_scheduled: "desiredNumberScheduled" required,
        number_ready: "numberReady" required,
        observed_generation: "observedGeneration",
        updated_number_scheduled: "updatedNumberScheduled",
        number_available: "numberAvailable",
        number_unavailable: "numberUnavailable",
        collision_count: "collisionCount",
        conditions: "conditions",
    }
    api::apps::v1::DaemonSetUpdateStrategy {
        r#type: "type",
        rolling_update: "rollingUpdate",
    }
    api::apps::v1::Deployment {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    api::apps::v1::DeploymentCondition {
        r#type: "type" required,
        status: "status" required,
        last_update_time: "lastUpdateTime",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    api::apps::v1::DeploymentList {
        metadata: "metadata",
        items: "items" required,
    }
    api::apps::v1::DeploymentSpec {
        replicas: "replicas",
        selector: "selector" required,
        template: "template" required,
        strategy: "strategy",
        min_ready_seconds: "minReadySeconds",
        revision_history_limit: "revisionHistoryLimit",
        paused: "paused",
        progress_deadline_seconds: "progressDeadlineSeconds",
    }
    api::apps::v1::DeploymentStatus {
        observed_generation: "observedGeneration",
        replicas: "replicas",
        updated_replicas: "updatedReplicas",
        ready_replicas: "readyReplicas",
        available_replicas: "availableReplicas",
        unavailable_replicas: "unavailableReplicas",
        terminating_replicas: "terminatingReplicas",
        conditions: "conditions",
        collision_count: "collisionCount",
    }
    api::apps::v1::DeploymentStrategy {
        r#type: "type",
        rolling_update: "rollingUpdate",
    }
    api::apps::v1::ReplicaSet {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    api::apps::v1::ReplicaSetCondition {
        r#type: "type" required,
        status: "status" required,
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    api::apps::v1::ReplicaSetList {
        metadata: "metadata",
        items: "items" required,
    }
    api::apps::v1::ReplicaSetSpec {
        replicas: "replicas",
        min_ready_seconds: "minReadySeconds",
        selector: "selector" required,
        template: "template",
    }
    api::apps::v1::ReplicaSetStatus {
        replicas: "replicas" required,
        fully_labeled_replicas: "fullyLabeledReplicas",
        ready_replicas: "readyReplicas",
        available_replicas: "availableReplicas",
        terminating_replicas: "terminatingReplicas",
        observed_generation: "observedGeneration",
        conditions: "conditions",
    }
    api::apps::v1::RollingUpdateDaemonSet {
        max_unavailable: "maxUnavailable",
        max_surge: "maxSurge",
    }
    api::apps::v1::RollingUpdateDeployment {
        max_unavailable: "maxUnavailable",
        max_surge: "maxSurge",
    }
    api::authentication::v1::BoundObjectReference {
        kind: "kind",
        api_version: "apiVersion",
        name: "name",
        u_id: "uid",
    }
    api::authentication::v1::TokenRequest {
        metadata: "metadata" required,
        spec: "spec" required,
        status: "status",
    }
    api::authentication::v1::TokenRequestSpec {
        audiences: "audiences" required,
        expiration_seconds: "expirationSeconds",
        bound_object_ref: "boundObjectRef",
    }
    api::authentication::v1::TokenRequestStatus {
        token: "token" required,
        expiration_timestamp: "expirationTimestamp" required,
    }
    api::authorization::v1::FieldSelectorAttributes {
        raw_selector: "rawSelector",
        requirements: "requirements",
    }
    api::authorization::v1::LabelSelectorAttributes {
        raw_selector: "rawSelector",
        requirements: "requirements",
    }
    api::authorization::v1::NonResourceAttributes {
        path: "path",
        verb: "verb",
    }
    api::authorization::v1::NonResourceRule {
        verbs: "verbs" required,
        non_resource_ur_ls: "nonResourceURLs",
    }
    api::authorization::v1::ResourceAttributes {
        namespace: "namespace",
        verb: "verb",
        group: "group",
        version: "version",
        resource: "resource",
        subresource: "subresource",
        name: "name",
        field_selector: "fieldSelector",
        label_selector: "labelSelector",
    }
    api::authorization::v1::ResourceRule {
        verbs: "verbs" required,
        api_groups: "apiGroups",
        resources: "resources",
        resource_names: "resourceNames",
    }
    api::authorization::v1::SelfSubjectAccessReview {
        metadata: "metadata" required,
        spec: "spec" required,
        status: "status",
    }
    api::authorization::v1::SelfSubjectAccessReviewSpec {
        resource_attributes: "resourceAttributes",
        non_resource_attributes: "nonResourceAttributes",
    }
    api::authorization::v1::SelfSubjectRulesReview {
        metadata: "metadata" required,
        spec: "spec" required,
        status: "status",
    }
    api::authorization::v1::SelfSubjectRulesReviewSpec {
        namespace: "namespace",
    }
    api::authorization::v1::SubjectAccessReviewStatus {
        allowed: "allowed" required,
        denied: "denied",
        reason: "reason",
        evaluation_error: "evaluationError",
    }
    api::authorization::v1::SubjectRulesReviewStatus {
        resource_rules: "resourceRules" required,
        non_resource_rules: "nonResourceRules" required,
        incomplete: "incomplete" required,
        evaluation_error: "evaluationError",
    }
    api::autoscaling::v1::Scale {
        metadata: "metadata" required,
        spec: "spec",
        status: "status",
    }
    api::autoscaling::v1::ScaleSpec {
        replicas: "replicas",
    }
    api::autoscaling::v1::ScaleStatus {
        replicas: "replicas" required,
        selector: "selector",
    }
    api::batch::v1::Job {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    api::batch::v1::JobCondition {
        r#type: "type" required,
        status: "status" required,
        last_probe_time: "lastProbeTime",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    api::batch::v1::JobList {
        metadata: "metadata",
        items: "items" required,
    }
    api::batch::v1::JobSpec {
        parallelism: "parallelism",
        completions: "completions",
        active_deadline_seconds: "activeDeadlineSeconds",
        pod_failure_policy: "podFailurePolicy",
        success_policy: "successPolicy",
        backoff_limit: "backoffLimit",
        backoff_limit_per_index: "backoffLimitPerIndex",
        max_failed_indexes: "maxFailedIndexes",
        selector: "selector",
        manual_selector: "manualSelector",
        template: "template" required,
        ttl_seconds_after_finished: "ttlSecondsAfterFinished",
        completion_mode: "completionMode",
        suspend: "suspend",
        pod_replacement_policy: "podReplacementPolicy",
        managed_by: "managedBy",
    }
    api::batch::v1::JobStatus {
        conditions: "conditions",
        start_time: "startTime",
        completion_time: "completionTime",
        active: "active",
        succeeded: "succeeded",
        failed: "failed",
        terminating: "terminating",
        completed_indexes: "completedIndexes",
        failed_indexes: "failedIndexes",
        uncounted_terminated_pods: "uncountedTerminatedPods",
        ready: "ready",
    }
    api::batch::v1::PodFailurePolicy {
        rules: "rules" required,
    }
    api::batch::v1::PodFailurePolicyOnExitCodesRequirement {
        container_name: "containerName",
        operator: "operator" required,
        values: "values" required,
    }
    api::batch::v1::PodFailurePolicyOnPodConditionsPattern {
        r#type: "type" required,
        status: "status" required,
    }
    api::batch::v1::PodFailurePolicyRule {
        action: "action" required,
        on_exit_codes: "onExitCodes",
        on_pod_conditions: "onPodConditions",
    }
    api::batch::v1::SuccessPolicy {
        rules: "rules" required,
    }
    api::batch::v1::SuccessPolicyRule {
        succeeded_indexes: "succeededIndexes",
        succeeded_count: "succeededCount",
    }
    api::batch::v1::UncountedTerminatedPods {
        succeeded: "succeeded",
        failed: "failed",
    }
    api::coordination::v1::Lease {
        metadata: "metadata",
        spec: "spec",
    }
    api::coordination::v1::LeaseList {
        metadata: "metadata",
        items: "items" required,
    }
    api::coordination::v1::LeaseSpec {
        holder_identity: "holderIdentity",
        lease_duration_seconds: "leaseDurationSeconds",
        acquire_time: "acquireTime",
        renew_time: "renewTime",
        lease_transitions: "leaseTransitions",
        strategy: "strategy",
        preferred_holder: "preferredHolder",
    }
    api::core::v1::Affinity {
        node_affinity: "nodeAffinity",
        pod_affinity: "podAffinity",
        pod_anti_affinity: "podAntiAffinity",
    }
    api::core::v1::AppArmorProfile {
        r#type: "type" required,
        localhost_profile: "localhostProfile",
    }
    api::core::v1::AttachedVolume {
        name: "name" required,
        device_path: "devicePath" required,
    }
    api::core::v1::AwsElasticBlockStoreVolumeSource {
        volume_id: "volumeId",
        fs_type: "fsType",
        partition: "partition",
        read_only: "readOnly",
    }
    api::core::v1::AzureDiskVolumeSource {
        disk_name: "diskName" required,
        disk_uri: "diskURI" required,
        caching_mode: "cachingMode",
        fs_type: "fsType",
        read_only: "readOnly",
        kind: "kind",
    }
    api::core::v1::AzureFilePersistentVolumeSource {
        secret_name: "secretName" required,
        share_name: "shareName" required,
        read_only: "readOnly",
        secret_namespace: "secretNamespace",
    }
    api::core::v1::AzureFileVolumeSource {
        secret_name: "secretName" required,
        share_name: "shareName" required,
        read_only: "readOnly",
    }
    api::core::v1::Binding {
        metadata: "metadata" required,
        target: "target" required,
    }
    api::core::v1::CSIPersistentVolumeSource {
        driver: "driver" required,
        volume_handle: "volumeHandle" required,
        read_only: "readOnly",
        fs_type: "fsType",
        volume_attributes: "volumeAttributes",
        controller_publish_secret_ref: "controllerPublishSecretRef",
        node_stage_secret_ref: "nodeStageSecretRef",
        node_publish_secret_ref: "nodePublishSecretRef",
        controller_expand_secret_ref: "controllerExpandSecretRef",
        node_expand_secret_ref: "nodeExpandSecretRef",
    }
    api::core::v1::CSIVolumeSource {
        driver: "driver" required,
        read_only: "readOnly",
        fs_type: "fsType",
        volume_attributes: "volumeAttributes",
        node_publish_secret_ref: "nodePublishSecretRef",
    }
    api::core::v1::Capabilities {
        add: "add",
        drop: "drop",
    }
    api::core::v1::CephFsPersistentVolumeSource {
        monitors: "monitors",
        path: "path",
        user: "user",
        secret_file: "secretFile",
        secret_ref: "secretRef",
        read_only: "readOnly",
    }
    api::core::v1::CephFsVolumeSource {
        monitors: "monitors",
        path: "path",
        user: "user",
        secret_file: "secretFile",
        secret_ref: "secretRef",
        read_only: "readOnly",
    }
    api::core::v1::CinderPersistentVolumeSource {
        volume_id: "volumeID" required,
        fs_type: "fsType",
        read_only: "readOnly",
        secret_ref: "secretRef",
    }
    api::core::v1::CinderVolumeSource {
        volume_id: "volumeID" required,
        fs_type: "fsType",
        read_only: "readOnly",
        secret_ref: "secretRef",
    }
    api::core::v1::ClientIpConfig {
        timeout_seconds: "timeoutSeconds",
    }
    api::core::v1::ClusterTrustBundleProjection {
        name: "name",
        signer_name: "signerName",
        label_selector: "labelSelector",
        optional: "optional",
        path: "path" required,
    }
    api::core::v1::ConfigMap {
        metadata: "metadata",
        immutable: "immutable",
        data: "data",
        binary_data: "binaryData",
    }
    api::core::v1::ConfigMapEnvSource {
        local_object_reference: "localObjectReference",
        optional: "optional",
    }
    api::core::v1::ConfigMapKeySelector {
        local_object_reference: "localObjectReference",
        key: "key" required,
        optional: "optional",
    }
    api::core::v1::ConfigMapList {
        metadata: "metadata",
        items: "items" required,
    }
    api::core::v1::ConfigMapNodeConfigSource {
        namespace: "namespace" required,
        name: "name" required,
        uid: "uid",
        resource_version: "resourceVersion",
        kubelet_config_key: "kubeletConfigKey" required,
    }
    api::core::v1::ConfigMapProjection {
        local_object_reference: "localObjectReference",
        items: "items",
        optional: "optional",
    }
    api::core::v1::ConfigMapVolumeSource {
        local_object_reference: "localObjectReference",
        items: "items",
        default_mode: "defaultMode",
        optional: "optional",
    }
    api::core::v1::Container {
        name: "name" required,
        image: "image",
        command: "command",
        args: "args",
        working_dir: "workingDir",
        ports: "ports",
        env_from: "envFrom",
        env: "env",
        resources: "resources",
        resize_policy: "resizePolicy",
        restart_policy: "restartPolicy",
        restart_policy_rules: "restartPolicyRules",
        volume_mounts: "volumeMounts",
        volume_devices: "volumeDevices",
        liveness_probe: "livenessProbe",
        readiness_probe: "readinessProbe",
        startup_probe: "startupProbe",
        lifecycle: "lifecycle",
        termination_message_path: "terminationMessagePath",
        termination_message_policy: "terminationMessagePolicy",
        image_pull_policy: "imagePullPolicy",
        security_context: "securityContext",
        stdin: "stdin",
        stdin_once: "stdinOnce",
        tty: "tty",
    }
    api::core::v1::ContainerExtendedResourceRequest {
        container_name: "containerName" required,
        resource_name: "resourceName" required,
        request_name: "requestName" required,
    }
    api::core::v1::ContainerImage {
        names: "names",
        size_bytes: "sizeBytes",
    }
    api::core::v1::ContainerPort {
        name: "name",
        host_port: "hostPort",
        container_port: "containerPort" required,
        protocol: "protocol",
        host_ip: "hostIP",
    }
    api::core::v1::ContainerResizePolicy {
        resource_name: "resourceName" required,
        restart_policy: "restartPolicy" required,
    }
    api::core::v1::ContainerRestartRule {
        action: "action" required,
        exit_codes: "exitCodes",
    }
    api::core::v1::ContainerRestartRuleOnExitCodes {
        operator: "operator" required,
        values: "values",
    }
    api::core::v1::ContainerState {
        waiting: "waiting",
        running: "running",
        terminated: "terminated",
    }
    api::core::v1::ContainerStateRunning {
        started_at: "startedAt",
    }
    api::core::v1::ContainerStateTerminated {
        exit_code: "exitCode" required,
        signal: "signal",
        reason: "reason",
        message: "message",
        started_at: "startedAt",
        finished_at: "finishedAt",
        container_id: "containerID",
    }
    api::core::v1::ContainerStateWaiting {
        reason: "reason",
        message: "message",
    }
    api::core::v1::ContainerStatus {
        name: "name" required,
        state: "state",
        last_state: "lastState",
        ready: "ready" required,
        restart_count: "restartCount" required,
        image: "image" required,
        image_id: "imageID" required,
        container_id: "containerID",
        started: "started",
        allocated_resources: "allocatedResources",
        resources: "resources",
        volume_mounts: "volumeMounts",
        user: "user",
        allocated_resources_status: "allocatedResourcesStatus",
        stop_signal: "stopSignal",
    }
    api::core::v1::ContainerUser {
        linux: "linux",
    }
    api::core::v1::DaemonEndpoint {
        port: "Port" required,
    }
    api::core::v1::DownwardAPIProjection {
        items: "items",
    }
    api::core::v1::DownwardAPIVolumeFile {
        path: "path" required,
        field_ref: "fieldRef",
        resource_field_ref: "resourceFieldRef",
        mode: "mode",
    }
    api::core::v1::DownwardAPIVolumeSource {
        items: "items",
        default_mode: "defaultMode",
    }
    api::core::v1::EmptyDirVolumeSource {
        medium: "medium",
        size_limit: "sizeLimit",
    }
    api::core::v1::EnvFromSource {
        prefix: "prefix",
        config_map_ref: "configMapRef",
        secret_ref: "secretRef",
    }
    api::core::v1::EnvVar {
        name: "name" required,
        value: "value",
        value_from: "valueFrom",
    }
    api::core::v1::EnvVarSource {
        field_ref: "fieldRef",
        resource_field_ref: "resourceFieldRef",
        config_map_key_ref: "configMapKeyRef",
        secret_key_ref: "secretKeyRef",
        file_key_ref: "fileKeyRef",
    }
    api::core::v1::EphemeralContainer {
        ephemeral_container_common: "ephemeralContainerCommon",
        target_container_name: "targetContainerName",
    }
    api::core::v1::EphemeralContainerCommon {
        name: "name",
        image: "image",
        command: "command",
        args: "args",
        working_dir: "workingDir",
        ports: "ports",
        env_from: "envFrom",
        env: "env",
        resources: "resources",
        resize_policy: "resizePolicy",
        restart_policy: "restartPolicy",
        restart_policy_rules: "restartPolicyRules",
        volume_mounts: "volumeMounts",
        volume_devices: "volumeDevices",
        liveness_probe: "livenessProbe",
        readiness_probe: "readinessProbe",
        startup_probe: "startupProbe",
        lifecycle: "lifecycle",
        termination_message_path: "terminationMessagePath",
        termination_message_policy: "terminationMessagePolicy",
        image_pull_policy: "imagePullPolicy",
        security_context: "securityContext",
        stdin: "stdin",
        stdin_once: "stdinOnce",
        tty: "tty",
    }
    api::core::v1::EphemeralVolumeSource {
        volume_claim_template: "volumeClaimTemplate",
    }
    api::core::v1::Event {
        metadata: "metadata" required,
        involved_object: "involvedObject" required,
        reason: "reason",
        message: "message",
        source: "source",
        first_timestamp: "firstTimestamp",
        last_timestamp: "lastTimestamp",
        count: "count",
        r#type: "type",
        event_time: "eventTime",
        series: "series",
        action: "action",
        related: "related",
        reporting_component: "reportingComponent",
        reporting_instance: "reportingInstance",
    }
    api::core::v1::EventList {
        metadata: "metadata",
        items: "items" required,
    }
    api::core::v1::EventSeries {
        count: "count",
        last_observed_time: "lastObservedTime",
    }
    api::core::v1::EventSource {
        component: "component",
        host: "host",
    }
    api::core::v1::ExecAction {
        command: "command",
    }
    api::core::v1::FcVolumeSource {
        target_ww_ns: "targetWwNs",
        lun: "lun",
        fs_type: "fsType",
        read_only: "readOnly",
        wwids: "wwids",
    }
    api::core::v1::FileKeySelector {
        volume_name: "volumeName" required,
        path: "path" required,
        key: "key" required,
        optional: "optional",
    }
    api::core::v1::FlexPersistentVolumeSource {
        driver: "driver" required,
        fs_type: "fsType",
        secret_ref: "secretRef",
        read_only: "readOnly",
        options: "options",
    }
    api::core::v1::FlexVolumeSource {
        driver: "driver" required,
        fs_type: "fsType",
        secret_ref: "secretRef",
        read_only: "readOnly",
        options: "options",
    }
    api::core::v1::FlockerVolumeSource {
        dataset_name: "datasetName",
        dataset_uuid: "datasetUUID",
    }
    api::core::v1::GcePersistentDiskVolumeSource {
        pd_name: "pdName",
        fs_type: "fsType",
        partition: "partition",
        read_only: "readOnly",
    }
    api::core::v1::GitRepoVolumeSource {
        repository: "repository" required,
        revision: "revision",
        directory: "directory",
    }
    api::core::v1::GlusterfsPersistentVolumeSource {
        endpoints: "endpoints" required,
        path: "path" required,
        read_only: "readOnly",
        endpoints_namespace: "endpointsNamespace",
    }
    api::core::v1::GlusterfsVolumeSource {
        endpoints: "endpoints" required,
        path: "path" required,
        read_only: "readOnly",
    }
    api::core::v1::GrpcAction {
        port: "port",
        service: "service",
    }
    api::core::v1::HostAlias {
        ip: "ip" required,
        hostnames: "hostnames",
    }
    api::core::v1::HostIp {
        ip: "ip",
    }
    api::core::v1::HostPathVolumeSource {
        path: "path" required,
        r#type: "type",
    }
    api::core::v1::HttpGetAction {
        path: "path",
        port: "port",
        host: "host",
        scheme: "scheme",
        http_headers: "httpHeaders",
    }
    api::core::v1::HttpHeader {
        name: "name",
        value: "value",
    }
    api::core::v1::ImageVolumeSource {
        reference: "reference",
        pull_policy: "pullPolicy",
    }
    api::core::v1::IscsiPersistentVolumeSource {
        target_portal: "targetPortal",
        iqn: "iqn",
        lun: "lun",
        iscsi_interface: "iscsiInterface",
        fs_type: "fsType",
        read_only: "readOnly",
        portals: "portals",
        chap_auth_discovery: "chapAuthDiscovery",
        chap_auth_session: "chapAuthSession",
        secret_ref: "secretRef",
        initiator_name: "initiatorName",
    }
    api::core::v1::IscsiVolumeSource {
        target_portal: "targetPortal",
        iqn: "iqn",
        lun: "lun",
        iscsi_interface: "iscsiInterface",
        fs_type: "fsType",
        read_only: "readOnly",
        portals: "portals",
        chap_auth_discovery: "chapAuthDiscovery",
        chap_auth_session: "chapAuthSession",
        secret_ref: "secretRef",
        initiator_name: "initiatorName",
    }
    api::core::v1::KeyToPath {
        key: "key" required,
        path: "path" required,
        mode: "mode",
    }
    api::core::v1::Lifecycle {
        post_start: "postStart",
        pre_stop: "preStop",
        stop_signal: "stopSignal",
    }
    api::core::v1::LifecycleHandler {
        exec: "exec",
        http_get: "httpGet",
        tcp_socket: "tcpSocket",
        sleep: "sleep",
    }
    api::core::v1::LinuxContainerUser {
        uid: "uid" required,
        gid: "gid" required,
        supplemental_groups: "supplementalGroups",
    }
    api::core::v1::LoadBalancerIngress {
        ip: "ip",
        hostname: "hostname",
        ip_mode: "ipMode",
        ports: "ports",
    }
    api::core::v1::LoadBalancerStatus {
        ingress: "ingress",
    }
    api::core::v1::LocalObjectReference {
        name: "name" required,
    }
    api::core::v1::LocalVolumeSource {
        path: "path" required,
        fs_type: "fsType",
    }
    api::core::v1::ModifyVolumeStatus {
        target_volume_attributes_class_name: "targetVolumeAttributesClassName",
        status: "status" required,
    }
    api::core::v1::Namespace {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    api::core::v1::NamespaceCondition {
        r#type: "type" required,
        status: "status" required,
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    api::core::v1::NamespaceList {
        metadata: "metadata",
        items: "items" required,
    }
    api::core::v1::NamespaceSpec {
        finalizers: "finalizers",
    }
    api::core::v1::NamespaceStatus {
        phase: "phase",
        conditions: "conditions",
    }
    api::core::v1::NfsVolumeSource {
        server: "server",
        path: "path",
        read_only: "readOnly",
    }
    api::core::v1::Node {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    api::core::v1::NodeAddress {
        r#type: "type" required,
        address: "address" required,
    }
    api::core::v1::NodeAffinity {
        required_during_scheduling_ignored_during_execution: "requiredDuringSchedulingIgnoredDuringExecution",
        preferred_during_scheduling_ignored_during_execution: "preferredDuringSchedulingIgnoredDuringExecution",
    }
    api::core::v1::NodeCondition {
        r#type: "type" required,
        status: "status" required,
        last_heartbeat_time: "lastHeartbeatTime",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    api::core::v1::NodeConfigSource {
        config_map: "configMap",
    }
    api::core::v1::NodeConfigStatus {
        assigned: "assigned",
        active: "active",
        last_known_good: "lastKnownGood",
        error: "error",
    }
    api::core::v1::NodeDaemonEndpoints {
        kubelet_endpoint: "kubeletEndpoint",
    }
    api::core::v1::NodeFeatures {
        supplemental_groups_policy: "supplementalGroupsPolicy",
    }
    api::core::v1::NodeList {
        metadata: "metadata",
        items: "items" required,
    }
    api::core::v1::NodeRuntimeHandler {
        name: "name",
        features: "features",
    }
    api::core::v1::NodeRuntimeHandlerFeatures {
        recursive_read_only_mounts: "recursiveReadOnlyMounts",
        user_namespaces: "userNamespaces",
    }
    api::core::v1::NodeSelector {
        node_selector_terms: "nodeSelectorTerms" required,
    }
    api::core::v1::NodeSelectorRequirement {
        key: "key" required,
        operator: "operator" required,
        values: "values",
    }
    api::core::v1::NodeSelectorTerm {
        match_expressions: "matchExpressions",
        match_fields: "matchFields",
    }
    api::core::v1::NodeSpec {
        pod_cidr: "podCIDR",
        pod_cid_rs: "podCIDRs",
        provider_id: "providerID",
        unschedulable: "unschedulable",
        taints: "taints",
        config_source: "configSource",
        external_id: "externalID",
    }
    api::core::v1::NodeStatus {
        capacity: "capacity",
        allocatable: "allocatable",
        phase: "phase",
        conditions: "conditions",
        addresses: "addresses",
        daemon_endpoints: "daemonEndpoints",
        node_info: "nodeInfo",
        images: "images",
        volumes_in_use: "volumesInUse",
        volumes_attached: "volumesAttached",
        config: "config",
        runtime_handlers: "runtimeHandlers",
        features: "features",
        declared_features: "declaredFeatures",
    }
    api::core::v1::NodeSwapStatus {
        capacity: "capacity",
    }
    api::core::v1::NodeSystemInfo {
        machine_id: "machineID" required,
        system_uuid: "systemUUID" required,
        boot_id: "bootID" required,
        kernel_version: "kernelVersion" required,
        os_image: "osImage" required,
        container_runtime_version: "containerRuntimeVersion" required,
        kubelet_version: "kubeletVersion" required,
        kube_proxy_version: "kubeProxyVersion" required,
        operating_system: "operatingSystem" required,
        architecture: "architecture" required,
        swap: "swap",
    }
    api::core::v1::ObjectFieldSelector {
        api_version: "apiVersion",
        field_path: "fieldPath" required,
    }
    api::core::v1::ObjectReference {
        kind: "kind",
        namespace: "namespace",
        name: "name",
        uid: "uid",
        api_version: "apiVersion",
        resource_version: "resourceVersion",
        field_path: "fieldPath",
    }
    api::core::v1::PersistentVolume {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    api::core::v1::PersistentVolumeClaim {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    api::core::v1::PersistentVolumeClaimCondition {
        r#type: "type" required,
        status: "status" required,
        last_probe_time: "lastProbeTime",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    api::core::v1::PersistentVolumeClaimList {
        metadata: "metadata",
        items: "items" required,
    }
    api::core::v1::PersistentVolumeClaimSpec {
        access_modes: "accessModes",
        selector: "selector",
        resources: "resources",
        volume_name: "volumeName",
        storage_class_name: "storageClassName",
        volume_mode: "volumeMode",
        data_source: "dataSource",
        data_source_ref: "dataSourceRef",
        volume_attributes_class_name: "volumeAttributesClassName",
    }
    api::core::v1::PersistentVolumeClaimStatus {
        phase: "phase",
        access_modes: "accessModes",
        capacity: "capacity",
        conditions: "conditions",
        allocated_resources: "allocatedResources",
        allocated_resource_statuses: "allocatedResourceStatuses",
        current_volume_attributes_class_name: "currentVolumeAttributesClassName",
        modify_volume_status: "modifyVolumeStatus",
    }
    api::core::v1::PersistentVolumeClaimTemplate {
        metadata: "metadata",
        spec: "spec" required,
    }
    api::core::v1::PersistentVolumeClaimVolumeSource {
        claim_name: "claimName" required,
        read_only: "readOnly",
    }
    api::core::v1::PersistentVolumeList {
        metadata: "metadata",
        items: "items" required,
    }
    api::core::v1::PersistentVolumeSource {
        gce_persistent_disk: "gcePersistentDisk",
        aws_elastic_block_store: "awsElasticBlockStore",
        host_path: "hostPath",
        glusterfs: "glusterfs",
        nfs: "nfs",
        rbd: "rbd",
        iscsi: "iscsi",
        cinder: "cinder",
        cephfs: "cephfs",
        fc: "fc",
        flocker: "flocker",
        flex_volume: "flexVolume",
        azure_file: "azureFile",
        vsphere_volume: "vsphereVolume",
        quobyte: "quobyte",
        azure_disk: "azureDisk",
        photon_persistent_disk: "photonPersistentDisk",
        portworx_volume: "portworxVolume",
        scale_io: "scaleIo",
        local: "local",
        storageos: "storageos",
        csi: "csi",
    }
    api::core::v1::PersistentVolumeSpec {
        capacity: "capacity",
        persistent_volume_source: "persistentVolumeSource",
        access_modes: "accessModes",
        claim_ref: "claimRef",
        persistent_volume_reclaim_policy: "persistentVolumeReclaimPolicy",
        storage_class_name: "storageClassName",
        mount_options: "mountOptions",
        volume_mode: "volumeMode",
        node_affinity: "nodeAffinity",
        volume_attributes_class_name: "volumeAttributesClassName",
    }
    api::core::v1::PersistentVolumeStatus {
        phase: "phase",
        message: "message",
        reason: "reason",
        last_phase_transition_time: "lastPhaseTransitionTime",
    }
    api::core::v1::PhotonPersistentDiskVolumeSource {
        pd_id: "pdID" required,
        fs_type: "fsType",
    }
    api::core::v1::Pod {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    api::core::v1::PodAffinity {
        required_during_scheduling_ignored_during_execution: "requiredDuringSchedulingIgnoredDuringExecution",
        preferred_during_scheduling_ignored_during_execution: "preferredDuringSchedulingIgnoredDuringExecution",
    }
    api::core::v1::PodAffinityTerm {
        label_selector: "labelSelector",
        namespaces: "namespaces",
        topology_key: "topologyKey" required,
        namespace_selector: "namespaceSelector",
        match_label_keys: "matchLabelKeys",
        mismatch_label_keys: "mismatchLabelKeys",
    }
    api::core::v1::PodAntiAffinity {
        required_during_scheduling_ignored_during_execution: "requiredDuringSchedulingIgnoredDuringExecution",
        preferred_during_scheduling_ignored_during_execution: "preferredDuringSchedulingIgnoredDuringExecution",
    }
    api::core::v1::PodCertificateProjection {
        signer_name: "signerName" required,
        key_type: "keyType" required,
        max_expiration_seconds: "maxExpirationSeconds",
        credential_bundle_path: "credentialBundlePath",
        key_path: "keyPath",
        certificate_chain_path: "certificateChainPath",
        user_annotations: "userAnnotations",
    }
    api::core::v1::PodCondition {
        r#type: "type" required,
        observed_generation: "observedGeneration",
        status: "status" required,
        last_probe_time: "lastProbeTime",
        last_transition_time: "lastTransitionTime",
        reason: "reason",
        message: "message",
    }
    api::core::v1::PodDnsConfig {
        nameservers: "nameservers",
        searches: "searches",
        options: "options",
    }
    api::core::v1::PodDnsConfigOption {
        name: "name",
        value: "value",
    }
    api::core::v1::PodExtendedResourceClaimStatus {
        request_mappings: "requestMappings" required,
        resource_claim_name: "resourceClaimName" required,
    }
    api::core::v1::PodIp {
        ip: "ip",
    }
    api::core::v1::PodList {
        metadata: "metadata",
        items: "items" required,
    }
    api::core::v1::PodOs {
        name: "name",
    }
    api::core::v1::PodReadinessGate {
        condition_type: "conditionType" required,
    }
    api::core::v1::PodResourceClaim {
        name: "name" required,
        resource_claim_name: "resourceClaimName",
        resource_claim_template_name: "resourceClaimTemplateName",
    }
    api::core::v1::PodResourceClaimStatus {
        name: "name" required,
        resource_claim_name: "resourceClaimName",
    }
    api::core::v1::PodSchedulingGate {
        name: "name" required,
    }
    api::core::v1::PodSecurityContext {
        se_linux_options: "seLinuxOptions",
        windows_options: "windowsOptions",
        run_as_user: "runAsUser",
        run_as_group: "runAsGroup",
        run_as_non_root: "runAsNonRoot",
        supplemental_groups: "supplementalGroups",
        supplemental_groups_policy: "supplementalGroupsPolicy",
        fs_group: "fsGroup",
        sysctls: "sysctls",
        fs_group_change_policy: "fsGroupChangePolicy",
        seccomp_profile: "seccompProfile",
        app_armor_profile: "appArmorProfile",
        se_linux_change_policy: "seLinuxChangePolicy",
    }
    api::core::v1::PodSpec {
        volumes: "volumes",
        init_containers: "initContainers",
        containers: "containers" required,
        ephemeral_containers: "ephemeralContainers",
        restart_policy: "restartPolicy",
        termination_grace_period_seconds: "terminationGracePeriodSeconds",
        active_deadline_seconds: "activeDeadlineSeconds",
        dns_policy: "dnsPolicy",
        node_selector: "nodeSelector",
        service_account_name: "serviceAccountName",
        service_account: "serviceAccount",
        automount_service_account_token: "automountServiceAccountToken",
        node_name: "nodeName",
        host_network: "hostNetwork",
        host_pid: "hostPID",
        host_ipc: "hostIPC",
        share_process_namespace: "shareProcessNamespace",
        security_context: "securityContext",
        image_pull_secrets: "imagePullSecrets",
        hostname: "hostname",
        subdomain: "subdomain",
        affinity: "affinity",
        scheduler_name: "schedulerName",
        tolerations: "tolerations",
        host_aliases: "hostAliases",
        priority_class_name: "priorityClassName",
        priority: "priority",
        dns_config: "dnsConfig",
        readiness_gates: "readinessGates",
        runtime_class_name: "runtimeClassName",
        enable_service_links: "enableServiceLinks",
        preemption_policy: "preemptionPolicy",
        overhead: "overhead",
        topology_spread_constraints: "topologySpreadConstraints",
        set_hostname_as_fqdn: "setHostnameAsFQDN",
        os: "os",
        host_users: "hostUsers",
        scheduling_gates: "schedulingGates",
        resource_claims: "resourceClaims",
        resources: "resources",
        hostname_override: "hostnameOverride",
        workload_ref: "workloadRef",
    }
    api::core::v1::PodStatus {
        observed_generation: "observedGeneration",
        phase: "phase",
        conditions: "conditions",
        message: "message",
        reason: "reason",
        nominated_node_name: "nominatedNodeName",
        host_ip: "hostIP",
        host_ips: "hostIPs",
        pod_ip: "podIP",
        pod_ips: "podIPs",
        start_time: "startTime",
        init_container_statuses: "initContainerStatuses",
        container_statuses: "containerStatuses",
        qos_class: "qosClass",
        ephemeral_container_statuses: "ephemeralContainerStatuses",
        resize: "resize",
        resource_claim_statuses: "resourceClaimStatuses",
        extended_resource_claim_status: "extendedResourceClaimStatus",
        allocated_resources: "allocatedResources",
        resources: "resources",
    }
    api::core::v1::PodTemplateSpec {
        metadata: "metadata",
        spec: "spec",
    }
    api::core::v1::PortStatus {
        port: "port" required,
        protocol: "protocol" required,
        error: "error",
    }
    api::core::v1::PortworxVolumeSource {
        volume_id: "volumeID" required,
        fs_type: "fsType",
        read_only: "readOnly",
    }
    api::core::v1::PreferredSchedulingTerm {
        weight: "weight" required,
        preference: "preference" required,
    }
    api::core::v1::Probe {
        handler: "handler",
        initial_delay_seconds: "initialDelaySeconds",
        timeout_seconds: "timeoutSeconds",
        period_seconds: "periodSeconds",
        success_threshold: "successThreshold",
        failure_threshold: "failureThreshold",
        termination_grace_period_seconds: "terminationGracePeriodSeconds",
    }
    api::core::v1::ProbeHandler {
        exec: "exec",
        http_get: "httpGet",
        tcp_socket: "tcpSocket",
        grpc: "grpc",
    }
    api::core::v1::ProjectedVolumeSource {
        sources: "sources",
        default_mode: "defaultMode",
    }
    api::core::v1::QuobyteVolumeSource {
        registry: "registry" required,
        volume: "volume" required,
        read_only: "readOnly",
        user: "user",
        group: "group",
        tenant: "tenant",
    }
    api::core::v1::RbdPersistentVolumeSource {
        monitors: "monitors",
        image: "image",
        fs_type: "fsType",
        pool: "pool",
        user: "user",
        keyring: "keyring",
        secret_ref: "secretRef",
        read_only: "readOnly",
    }
    api::core::v1::RbdVolumeSource {
        monitors: "monitors",
        image: "image",
        fs_type: "fsType",
        pool: "pool",
        user: "user",
        keyring: "keyring",
        secret_ref: "secretRef",
        read_only: "readOnly",
    }
    api::core::v1::ResourceClaim {
        name: "name" required,
        request: "request",
    }
    api::core::v1::ResourceFieldSelector {
        container_name: "containerName",
        resource: "resource" required,
        divisor: "divisor",
    }
    api::core::v1::ResourceHealth {
        resource_id: "resourceID" required,
        health: "health",
    }
    api::core::v1::ResourceRequirements {
        limits: "limits",
        requests: "requests",
        claims: "claims",
    }
    api::core::v1::ResourceStatus {
        name: "name" required,
        resources: "resources",
    }
    api::core::v1::ScaleIoPersistentVolumeSource {
        gateway: "gateway",
        system: "system",
        secret_ref: "secretRef",
        ssl_enabled: "sslEnabled",
        protection_domain: "protectionDomain",
        storage_pool: "storagePool",
        storage_mode: "storageMode",
        volume_name: "volumeName",
        fs_type: "fsType",
        read_only: "readOnly",
    }
    api::core::v1::ScaleIoVolumeSource {
        gateway: "gateway",
        system: "system",
        secret_ref: "secretRef",
        ssl_enabled: "sslEnabled",
        protection_domain: "protectionDomain",
        storage_pool: "storagePool",
        storage_mode: "storageMode",
        volume_name: "volumeName",
        fs_type: "fsType",
        read_only: "readOnly",
    }
    api::core::v1::SeLinuxOptions {
        user: "user",
        role: "role",
        r#type: "type",
        level: "level",
    }
    api::core::v1::SeccompProfile {
        r#type: "type" required,
        localhost_profile: "localhostProfile",
    }
    api::core::v1::Secret {
        metadata: "metadata",
        immutable: "immutable",
        data: "data",
        string_data: "stringData",
        r#type: "type",
    }
    api::core::v1::SecretEnvSource {
        local_object_reference: "localObjectReference",
        optional: "optional",
    }
    api::core::v1::SecretKeySelector {
        local_object_reference: "localObjectReference",
        key: "key" required,
        optional: "optional",
    }
    api::core::v1::SecretList {
        metadata: "metadata",
        items: "items" required,
    }
    api::core::v1::SecretProjection {
        local_object_reference: "localObjectReference",
        items: "items",
        optional: "optional",
    }
    api::core::v1::SecretReference {
        name: "name",
        namespace: "namespace",
    }
    api::core::v1::SecretVolumeSource {
        secret_name: "secretName",
        items: "items",
        default_mode: "defaultMode",
        optional: "optional",
    }
    api::core::v1::SecurityContext {
        capabilities: "capabilities",
        privileged: "privileged",
        se_linux_options: "seLinuxOptions",
        windows_options: "windowsOptions",
        run_as_user: "runAsUser",
        run_as_group: "runAsGroup",
        run_as_non_root: "runAsNonRoot",
        read_only_root_filesystem: "readOnlyRootFilesystem",
        allow_privilege_escalation: "allowPrivilegeEscalation",
        proc_mount: "procMount",
        seccomp_profile: "seccompProfile",
        app_armor_profile: "appArmorProfile",
    }
    api::core::v1::Service {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    api::core::v1::ServiceAccount {
        metadata: "metadata",
        secrets: "secrets",
        image_pull_secrets: "imagePullSecrets",
        automount_service_account_token: "automountServiceAccountToken",
    }
    api::core::v1::ServiceAccountList {
        metadata: "metadata",
        items: "items" required,
    }
    api::core::v1::ServiceAccountTokenProjection {
        audience: "audience",
        expiration_seconds: "expirationSeconds",
        path: "path" required,
    }
    api::core::v1::ServiceList {
        metadata: "metadata",
        items: "items" required,
    }
    api::core::v1::ServicePort {
        name: "name",
        protocol: "protocol",
        app_protocol: "appProtocol",
        port: "port" required,
        target_port: "targetPort",
        node_port: "nodePort",
    }
    api::core::v1::ServiceSpec {
        ports: "ports",
        selector: "selector",
        cluster_ip: "clusterIP",
        cluster_ips: "clusterIPs",
        r#type: "type",
        external_ips: "externalIPs",
        session_affinity: "sessionAffinity",
        load_balancer_ip: "loadBalancerIP",
        load_balancer_source_ranges: "loadBalancerSourceRanges",
        external_name: "externalName",
        external_traffic_policy: "externalTrafficPolicy",
        health_check_node_port: "healthCheckNodePort",
        publish_not_ready_addresses: "publishNotReadyAddresses",
        session_affinity_config: "sessionAffinityConfig",
        ip_families: "ipFamilies",
        ip_family_policy: "ipFamilyPolicy",
        allocate_load_balancer_node_ports: "allocateLoadBalancerNodePorts",
        load_balancer_class: "loadBalancerClass",
        internal_traffic_policy: "internalTrafficPolicy",
        traffic_distribution: "trafficDistribution",
    }
    api::core::v1::ServiceStatus {
        load_balancer: "loadBalancer",
        conditions: "conditions",
    }
    api::core::v1::SessionAffinityConfig {
        client_ip: "clientIP",
    }
    api::core::v1::SleepAction {
        seconds: "seconds" required,
    }
    api::core::v1::StorageOsPersistentVolumeSource {
        volume_name: "volumeName",
        volume_namespace: "volumeNamespace",
        fs_type: "fsType",
        read_only: "readOnly",
        secret_ref: "secretRef",
    }
    api::core::v1::StorageOsVolumeSource {
        volume_name: "volumeName",
        volume_namespace: "volumeNamespace",
        fs_type: "fsType",
        read_only: "readOnly",
        secret_ref: "secretRef",
    }
    api::core::v1::Sysctl {
        name: "name" required,
        value: "value" required,
    }
    api::core::v1::Taint {
        key: "key" required,
        value: "value",
        effect: "effect" required,
        time_added: "timeAdded",
    }
    api::core::v1::TcpSocketAction {
        port: "port",
        host: "host",
    }
    api::core::v1::Toleration {
        key: "key",
        operator: "operator",
        value: "value",
        effect: "effect",
        toleration_seconds: "tolerationSeconds",
    }
    api::core::v1::TopologySpreadConstraint {
        max_skew: "maxSkew" required,
        topology_key: "topologyKey" required,
        when_unsatisfiable: "whenUnsatisfiable" required,
        label_selector: "labelSelector",
        min_domains: "minDomains",
        node_affinity_policy: "nodeAffinityPolicy",
        node_taints_policy: "nodeTaintsPolicy",
        match_label_keys: "matchLabelKeys",
    }
    api::core::v1::TypedLocalObjectReference {
        api_group: "apiGroup",
        kind: "kind" required,
        name: "name" required,
    }
    api::core::v1::TypedObjectReference {
        api_group: "apiGroup",
        kind: "kind" required,
        name: "name" required,
        namespace: "namespace",
    }
    api::core::v1::Volume {
        name: "name" required,
        volume_source: "volumeSource",
    }
    api::core::v1::VolumeDevice {
        name: "name" required,
        device_path: "devicePath" required,
    }
    api::core::v1::VolumeMount {
        name: "name" required,
        read_only: "readOnly",
        recursive_read_only: "recursiveReadOnly",
        mount_path: "mountPath" required,
        sub_path: "subPath",
        mount_propagation: "mountPropagation",
        sub_path_expr: "subPathExpr",
    }
    api::core::v1::VolumeMountStatus {
        name: "name" required,
        mount_path: "mountPath" required,
        read_only: "readOnly",
        recursive_read_only: "recursiveReadOnly",
    }
    api::core::v1::VolumeNodeAffinity {
        required: "required",
    }
    api::core::v1::VolumeProjection {
        secret: "secret",
        downward_api: "downwardAPI",
        config_map: "configMap",
        service_account_token: "serviceAccountToken",
        cluster_trust_bundle: "clusterTrustBundle",
        pod_certificate: "podCertificate",
    }
    api::core::v1::VolumeResourceRequirements {
        limits: "limits",
        requests: "requests",
    }
    api::core::v1::VolumeSource {
        host_path: "hostPath",
        empty_dir: "emptyDir",
        gce_persistent_disk: "gcePersistentDisk",
        aws_elastic_block_store: "awsElasticBlockStore",
        git_repo: "gitRepo",
        secret: "secret",
        nfs: "nfs",
        iscsi: "iscsi",
        glusterfs: "glusterfs",
        persistent_volume_claim: "persistentVolumeClaim",
        rbd: "rbd",
        flex_volume: "flexVolume",
        cinder: "cinder",
        cephfs: "cephfs",
        flocker: "flocker",
        downward_api: "downwardApi",
        fc: "fc",
        azure_file: "azureFile",
        config_map: "configMap",
        vsphere_volume: "vsphereVolume",
        quobyte: "quobyte",
        azure_disk: "azureDisk",
        photon_persistent_disk: "photonPersistentDisk",
        projected: "projected",
        portworx_volume: "portworxVolume",
        scale_io: "scaleIo",
        storageos: "storageos",
        csi: "csi",
        ephemeral: "ephemeral",
        image: "image",
    }
    api::core::v1::VsphereVirtualDiskVolumeSource {
        volume_path: "volumePath" required,
        fs_type: "fsType",
        storage_policy_name: "storagePolicyName",
        storage_policy_id: "storagePolicyID",
    }
    api::core::v1::WeightedPodAffinityTerm {
        weight: "weight" required,
        pod_affinity_term: "podAffinityTerm" required,
    }
    api::core::v1::WindowsSecurityContextOptions {
        gmsa_credential_spec_name: "gmsaCredentialSpecName",
        gmsa_credential_spec: "gmsaCredentialSpec",
        run_as_user_name: "runAsUserName",
        host_process: "hostProcess",
    }
    api::core::v1::WorkloadReference {
        name: "name",
        pod_group: "podGroup",
        pod_group_replica_key: "podGroupReplicaKey",
    }
    api::events::v1::Event {
        metadata: "metadata",
        event_time: "eventTime",
        series: "series",
        reporting_controller: "reportingController",
        reporting_instance: "reportingInstance",
        action: "action",
        reason: "reason",
        regarding: "regarding",
        related: "related",
        note: "note",
        r#type: "type",
        deprecated_source: "deprecatedSource",
        deprecated_first_timestamp: "deprecatedFirstTimestamp",
        deprecated_last_timestamp: "deprecatedLastTimestamp",
        deprecated_count: "deprecatedCount",
    }
    api::events::v1::EventList {
        metadata: "metadata",
        items: "items" required,
    }
    api::events::v1::EventSeries {
        count: "count" required,
        last_observed_time: "lastObservedTime" required,
    }
    api::policy::v1::Eviction {
        metadata: "metadata" required,
        delete_options: "deleteOptions",
    }
    api::policy::v1::PodDisruptionBudget {
        metadata: "metadata",
        spec: "spec",
        status: "status",
    }
    api::policy::v1::PodDisruptionBudgetList {
        metadata: "metadata",
        items: "items" required,
    }
    api::policy::v1::PodDisruptionBudgetSpec {
        min_available: "minAvailable",
        selector: "selector",
        max_unavailable: "maxUnavailable",
        unhealthy_pod_eviction_policy: "unhealthyPodEvictionPolicy",
    }
    api::policy::v1::PodDisruptionBudgetStatus {
        observed_generation: "observedGeneration",
        disrupted_pods: "disruptedPods",
        disruptions_allowed: "disruptionsAllowed" required,
        current_healthy: "currentHealthy" required,
        desired_healthy: "desiredHealthy" required,
        expected_pods: "expectedPods" required,
        conditions: "conditions",
    }
    api::rbac::v1::AggregationRule {
        cluster_role_selectors: "clusterRoleSelectors",
    }
    api::rbac::v1::ClusterRole {
        metadata: "metadata",
        rules: "rules",
        aggregation_rule: "aggregationRule",
    }
    api::rbac::v1::ClusterRoleBinding {
        metadata: "metadata",
        subjects: "subjects",
        role_ref: "roleRef" required,
    }
    api::rbac::v1::ClusterRoleBindingList {
        metadata: "metadata",
        items: "items" required,
    }
    api::rbac::v1::ClusterRoleList {
        metadata: "metadata",
        items: "items" required,
    }
    api::rbac::v1::PolicyRule {
        verbs: "verbs" required,
        api_groups: "apiGroups",
        resources: "resources",
        resource_names: "resourceNames",
        non_resource_ur_ls: "nonResourceURLs",
    }
    api::rbac::v1::Role {
        metadata: "metadata",
        rules: "rules",
    }
    api::rbac::v1::RoleBinding {
        metadata: "metadata",
        subjects: "subjects",
        role_ref: "roleRef" required,
    }
    api::rbac::v1::RoleBindingList {
        metadata: "metadata",
        items: "items" required,
    }
    api::rbac::v1::RoleList {
        metadata: "metadata",
        items: "items" required,
    }
    api::rbac::v1::RoleRef {
        api_group: "apiGroup" required,
        kind: "kind" required,
        name: "name" required,
    }
    api::rbac::v1::Subject {
        kind: "kind" required,
        api_group: "apiGroup",
        name: "name" required,
        namespace: "namespace",
    }
    api::storage::v1::VolumeAttachment {
        metadata: "metadata",
        spec: "spec" required,
        status: "status",
    }
    api::storage::v1::VolumeAttachmentList {
        metadata: "metadata",
        items: "items" required,
    }
    api::storage::v1::VolumeAttachmentSource {
        persistent_volume_name: "persistentVolumeName",
        inline_volume_spec: "inlineVolumeSpec",
    }
    api::storage::v1::VolumeAttachmentSpec {
        attacher: "attacher" required,
        source: "source" required,
        node_name: "nodeName" required,
    }
    api::storage::v1::VolumeAttachmentStatus {
        attached: "attached" required,
        attachment_metadata: "attachmentMetadata",
        attach_error: "attachError",
        detach_error: "detachError",
    }
    api::storage::v1::VolumeError {
        time: "time",
        message: "message",
        error_code: "errorCode",
    }
    apimachinery::pkg::apis::meta::v1::Condition {
        r#type: "type" required,
        status: "status" required,
        observed_generation: "observedGeneration",
        last_transition_time: "lastTransitionTime" required,
        reason: "reason" required,
        message: "message" required,
    }
    apimachinery::pkg::apis::meta::v1::DeleteOptions {
        grace_period_seconds: "gracePeriodSeconds",
        preconditions: "preconditions",
        orphan_dependents: "orphanDependents",
        propagation_policy: "propagationPolicy",
        dry_run: "dryRun",
        ignore_store_read_error_with_cluster_breaking_potential: "ignoreStoreReadErrorWithClusterBreakingPotential",
    }
    apimachinery::pkg::apis::meta::v1::FieldSelectorRequirement {
        key: "key" required,
        operator: "operator" required,
        values: "values",
    }
    apimachinery::pkg::apis::meta::v1::LabelSelector {
        match_labels: "matchLabels",
        match_expressions: "matchExpressions",
    }
    apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
        key: "key" required,
        operator: "operator" required,
        values: "values",
    }
    apimachinery::pkg::apis::meta::v1::ListMeta {
        self_link: "selfLink",
        resource_version: "resourceVersion",
        r#continue: "continue",
        remaining_item_count: "remainingItemCount",
    }
    apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
        manager: "manager",
        operation: "operation",
        api_version: "apiVersion",
        time: "time",
        fields_type: "fieldsType",
        fields_v1: "fieldsV1",
        subresource: "subresource",
    }
    apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: "name",
        generate_name: "generateName",
        namespace: "namespace",
        self_link: "selfLink",
        uid: "uid",
        resource_version: "resourceVersion",
        generation: "generation",
        creation_timestamp: "creationTimestamp",
        deletion_timestamp: "deletionTimestamp",
        deletion_grace_period_seconds: "deletionGracePeriodSeconds",
        labels: "labels",
        annotations: "annotations",
        owner_references: "ownerReferences",
        finalizers: "finalizers",
        managed_fields: "managedFields",
    }
    apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "apiVersion" required,
        kind: "kind" required,
        name: "name" required,
        uid: "uid" required,
        controller: "controller",
        block_owner_deletion: "blockOwnerDeletion",
    }
    apimachinery::pkg::apis::meta::v1::Preconditions {
        uid: "uid",
        resource_version: "resourceVersion",
    }
    apimachinery::pkg::apis::meta::v1::Status {
        metadata: "metadata" required,
        status: "status",
        message: "message",
        reason: "reason",
        details: "details",
        code: "code",
    }
    apimachinery::pkg::apis::meta::v1::StatusCause {
        reason: "reason",
        message: "message",
        field: "field",
    }
    apimachinery::pkg::apis::meta::v1::StatusDetails {
        name: "name",
        group: "group",
        kind: "kind",
        uid: "uid",
        causes: "causes",
        retry_after_seconds: "retryAfterSeconds",
    }
    apimachinery::pkg::apis::meta::v1::WatchEvent {
        r#type: "type" required,
        object: "object" required,
    }
}
