//! The operations of the OpenAPI documents: one per route the emulator
//! serves, named and shaped as the real API server's
//! (`apiserver/pkg/endpoints/installer.go`: operation ids, the
//! `x-kubernetes-action` and `x-kubernetes-group-version-kind` extensions,
//! and the query parameters each verb takes). kubectl looks for the
//! `fieldValidation` parameter of a kind's PATCH operation to decide that
//! the server validates fields itself
//! (`cli-runtime/pkg/resource/query_param_verifier{,_v3}.go`).

use serde_json::{Map, Value, json};

use crate::resources::Resource;

/// A query or path parameter.
struct Param {
    name: &'static str,
    location: &'static str,
    kind: &'static str,
    description: &'static str,
}

const fn query(name: &'static str, kind: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: "query",
        kind,
        description,
    }
}

const PRETTY: Param = query(
    "pretty",
    "string",
    "If 'true', then the output is pretty printed.",
);
const DRY_RUN: Param = query(
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes.",
);
const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
);
const FORCE: Param = query(
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people.",
);
const GRACE_PERIOD: Param = query(
    "gracePeriodSeconds",
    "integer",
    "The duration in seconds before the object should be deleted.",
);
const PROPAGATION_POLICY: Param = query(
    "propagationPolicy",
    "string",
    "Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'.",
);
const LIST_PARAMS: [Param; 9] = [
    query(
        "allowWatchBookmarks",
        "boolean",
        "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
    ),
    query(
        "continue",
        "string",
        "The continue option should be set when retrieving more results from the server.",
    ),
    query(
        "fieldSelector",
        "string",
        "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
    ),
    query(
        "labelSelector",
        "string",
        "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
    ),
    query(
        "limit",
        "integer",
        "limit is a maximum number of responses to return for a list call.",
    ),
    query(
        "resourceVersion",
        "string",
        "resourceVersion sets a constraint on what resource versions a request may be served from.",
    ),
    query(
        "resourceVersionMatch",
        "string",
        "resourceVersionMatch determines how resourceVersion is applied to list calls.",
    ),
    query(
        "timeoutSeconds",
        "integer",
        "Timeout for the list/watch call.",
    ),
    query(
        "watch",
        "boolean",
        "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
    ),
];

/// One operation of a path.
struct Operation {
    method: &'static str,
    action: &'static str,
    id: String,
    description: String,
    /// Definition of the request body.
    body: Option<String>,
    /// Definition of the success answer, and its codes.
    response: String,
    codes: &'static [&'static str],
    params: Vec<&'static Param>,
    gvk: (&'static str, &'static str, &'static str),
    patch: bool,
}

/// A path and what it serves.
pub(crate) struct PathItem {
    path: String,
    params: Vec<Param>,
    operations: Vec<Operation>,
}

/// Definition names the operations of a resource use.
pub(crate) struct Bodies {
    pub kind: String,
    pub list: String,
    pub status: String,
    pub delete_options: String,
    pub patch: String,
    /// `(subresource, definition, group, kind)` of subresource bodies.
    pub subresources: Vec<(&'static str, String, &'static str, &'static str)>,
}

fn camel(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// `CoreV1`, `AppsV1`, `CoordinationV1` (`coordination.k8s.io` → `Coordination`).
fn group_version_id(r: &Resource) -> String {
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.split('.').next().unwrap_or(r.group)
    };
    format!("{}{}", camel(group), camel(r.version))
}

/// The paths of one resource.
pub(crate) fn path_items(r: &'static Resource, bodies: &Bodies) -> Vec<PathItem> {
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let gv = group_version_id(r);
    let gvk = (r.group, r.version, r.kind);
    let collection = if r.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };
    let path_params = |named: bool| {
        let mut params = Vec::new();
        if named {
            params.push(Param {
                name: "name",
                location: "path",
                kind: "string",
                description: "name of the resource",
            });
        }
        if r.namespaced {
            params.push(Param {
                name: "namespace",
                location: "path",
                kind: "string",
                description: "object name and auth scope, such as for teams and projects",
            });
        }
        params.push(PRETTY);
        params
    };
    let write_params = || vec![&DRY_RUN, &FIELD_MANAGER, &FIELD_VALIDATION];
    let op = |method, action, verb: &str, suffix: &str, description: String| Operation {
        method,
        action,
        id: format!("{verb}{gv}{scope}{}{suffix}", r.kind),
        description,
        body: None,
        response: bodies.kind.clone(),
        codes: &["200"],
        params: Vec::new(),
        gvk,
        patch: false,
    };
    // Reviews are only created (`pkg/registry/authorization/*/rest.go`
    // implement `rest.Creater` alone), so their one path is a POST.
    if r.create_only() {
        return vec![PathItem {
            path: collection,
            params: path_params(false),
            operations: vec![Operation {
                body: Some(bodies.kind.clone()),
                codes: &["200", "201", "202"],
                params: write_params(),
                ..op("post", "post", "create", "", format!("create a {}", r.kind))
            }],
        }];
    }
    let mut items = Vec::new();
    let mut collection_ops = vec![
        Operation {
            response: bodies.list.clone(),
            params: LIST_PARAMS.iter().collect(),
            ..op(
                "get",
                "list",
                "list",
                "",
                format!("list or watch objects of kind {}", r.kind),
            )
        },
        Operation {
            body: Some(bodies.kind.clone()),
            codes: &["200", "201", "202"],
            params: write_params(),
            ..op("post", "post", "create", "", format!("create a {}", r.kind))
        },
    ];
    collection_ops.push(Operation {
        body: Some(bodies.delete_options.clone()),
        response: bodies.status.clone(),
        params: {
            let mut p: Vec<&'static Param> = LIST_PARAMS.iter().collect();
            p.extend([&DRY_RUN, &GRACE_PERIOD, &PROPAGATION_POLICY]);
            p
        },
        ..op(
            "delete",
            "deletecollection",
            "deleteCollection",
            "",
            format!("delete collection of {}", r.kind),
        )
    });
    items.push(PathItem {
        path: collection.clone(),
        params: path_params(false),
        operations: collection_ops,
    });
    if r.namespaced {
        items.push(PathItem {
            path: format!("{prefix}/{}", r.plural),
            params: vec![PRETTY],
            operations: vec![Operation {
                id: format!("list{gv}{}ForAllNamespaces", r.kind),
                response: bodies.list.clone(),
                params: LIST_PARAMS.iter().collect(),
                ..op(
                    "get",
                    "list",
                    "list",
                    "",
                    format!("list or watch objects of kind {}", r.kind),
                )
            }],
        });
    }
    let item = format!("{collection}/{{name}}");
    items.push(PathItem {
        path: item.clone(),
        params: path_params(true),
        operations: vec![
            op(
                "get",
                "get",
                "read",
                "",
                format!("read the specified {}", r.kind),
            ),
            Operation {
                body: Some(bodies.kind.clone()),
                codes: &["200", "201"],
                params: write_params(),
                ..op(
                    "put",
                    "put",
                    "replace",
                    "",
                    format!("replace the specified {}", r.kind),
                )
            },
            Operation {
                body: Some(bodies.patch.clone()),
                codes: &["200", "201"],
                params: {
                    let mut p = write_params();
                    p.push(&FORCE);
                    p
                },
                patch: true,
                ..op(
                    "patch",
                    "patch",
                    "patch",
                    "",
                    format!("partially update the specified {}", r.kind),
                )
            },
            Operation {
                body: Some(bodies.delete_options.clone()),
                codes: &["200", "202"],
                params: vec![&DRY_RUN, &GRACE_PERIOD, &PROPAGATION_POLICY],
                ..op(
                    "delete",
                    "delete",
                    "delete",
                    "",
                    format!("delete a {}", r.kind),
                )
            },
        ],
    });
    if r.subresources.contains(&"status") {
        items.push(PathItem {
            path: format!("{item}/status"),
            params: path_params(true),
            operations: vec![
                op(
                    "get",
                    "get",
                    "read",
                    "Status",
                    format!("read status of the specified {}", r.kind),
                ),
                Operation {
                    body: Some(bodies.kind.clone()),
                    codes: &["200", "201"],
                    params: write_params(),
                    ..op(
                        "put",
                        "put",
                        "replace",
                        "Status",
                        format!("replace status of the specified {}", r.kind),
                    )
                },
                Operation {
                    body: Some(bodies.patch.clone()),
                    codes: &["200", "201"],
                    params: {
                        let mut p = write_params();
                        p.push(&FORCE);
                        p
                    },
                    patch: true,
                    ..op(
                        "patch",
                        "patch",
                        "patch",
                        "Status",
                        format!("partially update status of the specified {}", r.kind),
                    )
                },
            ],
        });
    }
    for (sub, definition, group, kind) in &bodies.subresources {
        if !r.subresources.contains(sub) {
            continue;
        }
        let sub_gvk = (*group, "v1", *kind);
        let suffix = camel(sub);
        let operations = if *sub == "scale" {
            vec![
                Operation {
                    response: definition.clone(),
                    gvk: sub_gvk,
                    ..op(
                        "get",
                        "get",
                        "read",
                        &suffix,
                        format!("read scale of the specified {}", r.kind),
                    )
                },
                Operation {
                    body: Some(definition.clone()),
                    response: definition.clone(),
                    codes: &["200", "201"],
                    params: write_params(),
                    gvk: sub_gvk,
                    ..op(
                        "put",
                        "put",
                        "replace",
                        &suffix,
                        format!("replace scale of the specified {}", r.kind),
                    )
                },
                Operation {
                    body: Some(bodies.patch.clone()),
                    response: definition.clone(),
                    codes: &["200", "201"],
                    params: {
                        let mut p = write_params();
                        p.push(&FORCE);
                        p
                    },
                    gvk: sub_gvk,
                    patch: true,
                    ..op(
                        "patch",
                        "patch",
                        "patch",
                        &suffix,
                        format!("partially update scale of the specified {}", r.kind),
                    )
                },
            ]
        } else {
            vec![Operation {
                body: Some(definition.clone()),
                response: definition.clone(),
                codes: &["200", "201", "202"],
                params: write_params(),
                gvk: sub_gvk,
                ..op(
                    "post",
                    "post",
                    "create",
                    &suffix,
                    format!("create {sub} of a {}", r.kind),
                )
            }]
        };
        items.push(PathItem {
            path: format!("{item}/{sub}"),
            params: path_params(true),
            operations,
        });
    }
    items
}

fn gvk_json((group, version, kind): (&str, &str, &str)) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

fn tag(gvk: (&str, &str, &str)) -> String {
    let group = if gvk.0.is_empty() {
        "core"
    } else {
        gvk.0.split('.').next().unwrap_or(gvk.0)
    };
    format!("{group}_{}", gvk.1)
}

const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
const MEDIA_TYPES: [&str; 3] = [
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

/// The `paths` entry of these items, Swagger 2.0 style.
pub(crate) fn render_v2(items: &[PathItem], paths: &mut Map<String, Value>) {
    let param = |p: &Param| {
        let mut m = Map::new();
        m.insert("name".into(), json!(p.name));
        m.insert("in".into(), json!(p.location));
        m.insert("type".into(), json!(p.kind));
        m.insert("uniqueItems".into(), json!(true));
        m.insert("description".into(), json!(p.description));
        if p.location == "path" {
            m.insert("required".into(), json!(true));
        }
        Value::Object(m)
    };
    for item in items {
        let mut entry = Map::new();
        for o in &item.operations {
            let mut parameters: Vec<Value> = o.params.iter().map(|p| param(p)).collect();
            if let Some(body) = &o.body {
                parameters.insert(
                    0,
                    json!({"name": "body", "in": "body", "required": o.method != "delete",
                           "schema": {"$ref": format!("#/definitions/{body}")}}),
                );
            }
            let responses: Map<String, Value> = o
                .codes
                .iter()
                .map(|c| {
                    (
                        c.to_string(),
                        json!({"description": "OK", "schema": {"$ref": format!("#/definitions/{}", o.response)}}),
                    )
                })
                .chain(std::iter::once((
                    "401".to_string(),
                    json!({"description": "Unauthorized"}),
                )))
                .collect();
            let consumes: Vec<&str> = if o.patch {
                PATCH_TYPES.to_vec()
            } else {
                vec!["*/*"]
            };
            entry.insert(
                o.method.into(),
                json!({
                    "description": o.description,
                    "consumes": consumes,
                    "produces": MEDIA_TYPES,
                    "schemes": ["https"],
                    "tags": [tag(o.gvk)],
                    "operationId": o.id,
                    "parameters": parameters,
                    "responses": responses,
                    "x-kubernetes-action": o.action,
                    "x-kubernetes-group-version-kind": gvk_json(o.gvk),
                }),
            );
        }
        entry.insert(
            "parameters".into(),
            Value::Array(item.params.iter().map(param).collect()),
        );
        paths.insert(item.path.clone(), Value::Object(entry));
    }
}

/// The `paths` entry of these items, OpenAPI 3.0 style.
pub(crate) fn render_v3(items: &[PathItem], paths: &mut Map<String, Value>) {
    let param = |p: &Param| {
        let mut m = Map::new();
        m.insert("name".into(), json!(p.name));
        m.insert("in".into(), json!(p.location));
        m.insert("description".into(), json!(p.description));
        m.insert(
            "schema".into(),
            json!({"type": p.kind, "uniqueItems": true}),
        );
        if p.location == "path" {
            m.insert("required".into(), json!(true));
        }
        Value::Object(m)
    };
    let content = |definition: &str, types: &[&str]| -> Value {
        let schema = json!({"$ref": format!("#/components/schemas/{definition}")});
        Value::Object(
            types
                .iter()
                .map(|t| (t.to_string(), json!({"schema": schema})))
                .collect(),
        )
    };
    for item in items {
        let mut entry = Map::new();
        for o in &item.operations {
            let mut op = Map::new();
            op.insert("tags".into(), json!([tag(o.gvk)]));
            op.insert("description".into(), json!(o.description));
            op.insert("operationId".into(), json!(o.id));
            if !o.params.is_empty() {
                op.insert(
                    "parameters".into(),
                    Value::Array(o.params.iter().map(|p| param(p)).collect()),
                );
            }
            if let Some(body) = &o.body {
                let types: Vec<&str> = if o.patch {
                    PATCH_TYPES.to_vec()
                } else {
                    vec!["*/*"]
                };
                op.insert(
                    "requestBody".into(),
                    json!({"content": content(body, &types), "required": o.method != "delete"}),
                );
            }
            let mut responses: Map<String, Value> = o
                .codes
                .iter()
                .map(|c| {
                    (
                        c.to_string(),
                        json!({"description": "OK", "content": content(&o.response, &MEDIA_TYPES)}),
                    )
                })
                .collect();
            responses.insert("401".into(), json!({"description": "Unauthorized"}));
            op.insert("responses".into(), Value::Object(responses));
            op.insert("x-kubernetes-action".into(), json!(o.action));
            op.insert("x-kubernetes-group-version-kind".into(), gvk_json(o.gvk));
            entry.insert(o.method.into(), Value::Object(op));
        }
        entry.insert(
            "parameters".into(),
            Value::Array(item.params.iter().map(param).collect()),
        );
        paths.insert(item.path.clone(), Value::Object(entry));
    }
}

/// The definitions the operations of these items name.
pub(crate) fn referenced(items: &[PathItem]) -> Vec<String> {
    let mut out = Vec::new();
    for item in items {
        for o in &item.operations {
            out.push(o.response.clone());
            if let Some(b) = &o.body {
                out.push(b.clone());
            }
        }
    }
    out
}
