//! Behind a proxy: the real binary reaches the API server through the
//! kubeconfig cluster's `proxy-url` and AWS through `HTTP_PROXY`, as
//! kubectl and the AWS CLI do, and `NO_PROXY` sends AWS calls direct. The
//! proxy is a small HTTP proxy on loopback (CONNECT tunnels for HTTPS,
//! absolute-form requests for HTTP, RFC 9110 §9.3.6 and RFC 9112 §3.2.2)
//! that records what it carried.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::moto_env::{MotoSpec, start, text};

/// What the proxy carried: `CONNECT host:port` or `GET host:port`.
#[derive(Clone, Debug)]
struct Carried {
    method: String,
    target: String,
}

struct LoopbackProxy {
    url: String,
    carried: Arc<Mutex<Vec<Carried>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LoopbackProxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let carried = Arc::new(Mutex::new(Vec::new()));
        let log = carried.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, log.clone()));
            }
        });
        Self { url, carried, task }
    }

    fn carried(&self) -> Vec<Carried> {
        self.carried.lock().expect("log").clone()
    }

    fn reset(&self) {
        self.carried.lock().expect("log").clear();
    }

    fn saw(&self, method: &str, target: &str) -> bool {
        self.carried()
            .iter()
            .any(|c| c.method == method && c.target == target)
    }
}

impl Drop for LoopbackProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client connection: a CONNECT becomes a tunnel; a plain request is
/// passed on as it is to the host its absolute URI names (our servers
/// accept the absolute form), with the rest of the connection.
async fn serve(client: TcpStream, log: Arc<Mutex<Vec<Carried>>>) {
    let mut client = BufReader::new(client);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        match client.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let end = line == "\r\n";
        head.push(line);
        if end {
            break;
        }
    }
    let mut words = head[0].split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return;
    };
    let host = if method == "CONNECT" {
        target.to_string()
    } else {
        let rest = target.strip_prefix("http://").unwrap_or(target);
        rest.split('/').next().unwrap_or_default().to_string()
    };
    log.lock().expect("log").push(Carried {
        method: method.to_string(),
        target: host.clone(),
    });
    let Ok(mut upstream) = TcpStream::connect(&host).await else {
        let _ = client
            .get_mut()
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    if method == "CONNECT" {
        if client
            .get_mut()
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    } else if upstream.write_all(head.concat().as_bytes()).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

/// `kubesurge check` — which lists nodes and asks EC2 — through the proxy:
/// the API server through the kubeconfig's `proxy-url` (a CONNECT to its
/// address), EC2 through `HTTP_PROXY`; with `NO_PROXY` naming the EC2
/// endpoint's address, EC2 is reached directly while the kubeconfig's
/// proxy still carries the API server's traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_reach_the_cluster_and_aws_through_proxies() {
    let env = start(MotoSpec {
        cluster: "proxied",
        pools: &[("general", 2)],
        auto_scaling: &[],
        zones: 2,
        max_surge: 1,
        hook: None,
    })
    .await;
    let proxy = LoopbackProxy::start().await;

    let kubeconfig_text = std::fs::read_to_string(&env.kubeconfig).expect("kubeconfig");
    let mut kubeconfig: Value = serde_saphyr::from_str(&kubeconfig_text).expect("YAML");
    let server = kubeconfig["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("server")
        .to_string();
    kubeconfig["clusters"][0]["cluster"]["proxy-url"] = Value::String(proxy.url.clone());
    std::fs::write(&env.kubeconfig, kubeconfig.to_string()).expect("write");
    let api_server = host_port(&server);
    let ec2 = host_port(env.proxy.url());

    let run = |no_proxy: Option<&str>| {
        let mut cmd = env.command(Some(&env.config), &["check", "-o", "json"]);
        cmd.env("HTTP_PROXY", &proxy.url)
            .env_remove("http_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("no_proxy");
        match no_proxy {
            Some(rules) => cmd.env("NO_PROXY", rules),
            None => cmd.env_remove("NO_PROXY"),
        };
        cmd.output()
    };

    let output = run(None).await.expect("kubesurge runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        proxy.saw("CONNECT", &api_server),
        "the API server through the kubeconfig's proxy-url: {:?}",
        proxy.carried()
    );
    assert!(
        proxy
            .carried()
            .iter()
            .any(|c| c.method != "CONNECT" && c.target == ec2),
        "EC2 through HTTP_PROXY: {:?}",
        proxy.carried()
    );
    assert!(
        !env.proxy.calls().is_empty(),
        "EC2 answered the proxied calls"
    );

    proxy.reset();
    let ec2_host = ec2.split(':').next().expect("host").to_string();
    let output = run(Some(&ec2_host)).await.expect("kubesurge runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        proxy.saw("CONNECT", &api_server),
        "NO_PROXY does not apply to a kubeconfig's proxy-url: {:?}",
        proxy.carried()
    );
    assert!(
        proxy.carried().iter().all(|c| c.method == "CONNECT"),
        "NO_PROXY={ec2_host} sends EC2 calls direct: {:?}",
        proxy.carried()
    );
    env.finish();
}
