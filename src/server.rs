//! `nanokube server`: the control plane. Opens the store, makes or loads the cluster PKI and
//! tokens, writes the admin kubeconfig, creates the default namespaces, and serves the
//! Kubernetes API over HTTPS until SIGTERM or SIGINT. docs/api-server.md follows a request
//! through it.

use crate::apiserver::{auth::Authenticator, bootstrap, handler::Api, http, tls};
use crate::store::{self, sqlite};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Directory holding all of the server's state.
    #[arg(long, default_value = "/var/lib/nanokube")]
    pub data_dir: PathBuf,
    /// Where to write the admin kubeconfig (mode 0600) at every start.
    #[arg(long, default_value = "/etc/nanokube/nanokube.yaml")]
    pub write_kubeconfig: PathBuf,
    /// HTTPS port of the API server (0 picks a free port; the kubeconfig names it).
    #[arg(long, default_value_t = 6443)]
    pub https_listen_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: String,
    /// Shared secret for nodes joining the cluster.
    #[arg(long, env = "NANOKUBE_TOKEN")]
    pub token: Option<String>,
    /// Store: empty for the embedded SQLite database, or an etcd endpoint.
    #[arg(long)]
    pub datastore_endpoint: Option<String>,
    /// Run the control plane alone, without a local agent.
    #[arg(long)]
    pub disable_agent: bool,
    /// Seconds between compactions of the store's history.
    #[arg(long, default_value_t = 300)]
    pub compaction_interval_seconds: u64,
    /// Revisions of history always kept by compaction (watchers behind this get 410 Expired).
    #[arg(long, default_value_t = 1000)]
    pub compaction_keep_revisions: i64,
    /// Most non-mutating requests (get, list) served at once; more are refused with 429.
    /// Watches and other long-running requests do not count. 0: no limit.
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Most mutating requests (create, update, patch, delete) served at once; more are refused
    /// with 429. 0: no limit.
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// Who may do what, as kube-apiserver's flag: authorizers asked in order (Node, RBAC,
    /// AlwaysAllow, AlwaysDeny); `system:masters` is always allowed.
    #[arg(long, default_value = "Node,RBAC")]
    pub authorization_mode: String,
    /// Whether requests without credentials are served as `system:anonymous` (allowed what
    /// RBAC grants `system:unauthenticated`: the health and version paths). Off by default,
    /// as k3s runs kube-apiserver; `--anonymous-auth=true` as upstream's default.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,
    /// The range Service cluster IPs come from.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// How long a node's agent may be silent before the node is Unknown and tainted
    /// unreachable (a Go duration, as kube-controller-manager's flag).
    #[arg(long, default_value = "50s", value_parser = go_duration)]
    pub node_monitor_grace_period: Duration,
    /// How often the node lifecycle controller looks at each node.
    #[arg(long, default_value = "5s", value_parser = go_duration)]
    pub node_monitor_period: Duration,
    /// The ports NodePort and LoadBalancer services get node ports from.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// How long the certificates the controller manager signs live at most (a Go duration,
    /// kube-controller-manager's flag): nodes renew theirs once 80% of that has passed.
    #[arg(long, default_value = "8760h", value_parser = go_duration)]
    pub cluster_signing_duration: Duration,
    /// Run no controllers (k3s's flag): the API server alone answers, as for tests of its
    /// own semantics or a controller manager run elsewhere.
    #[arg(long)]
    pub disable_controller_manager: bool,
    /// Run no scheduler (k3s's flag).
    #[arg(long)]
    pub disable_scheduler: bool,
    /// Packaged components not to run, as k3s's --disable (repeatable or comma-separated):
    /// `servicelb` leaves LoadBalancer services to another load balancer.
    #[arg(long = "disable", value_delimiter = ',')]
    pub disable: Vec<String>,
    /// More names or addresses for the serving certificate (k3s's --tls-san; repeatable).
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,
    /// The `iss` of service account tokens (kube-apiserver's flag).
    #[arg(long, default_value = crate::apiserver::service_account_token::DEFAULT_ISSUER)]
    pub service_account_issuer: String,
    /// Audiences the API server accepts in service account tokens (comma-separated);
    /// the issuer when none are given (kube-apiserver's flag).
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// Encrypt Secrets at rest (k3s's flag; `=false` to turn it off). On by default for a new
    /// cluster (nothing stored yet), which gets <data-dir>/server/cred/encryption-config.json
    /// with one random AES-CBC key. A cluster that has that file always uses it.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub secrets_encryption: bool,
    /// An EncryptionConfiguration file (apiserver.config.k8s.io/v1) to use instead of the
    /// generated one (kube-apiserver's flag).
    #[arg(long)]
    pub encryption_provider_config: Option<PathBuf>,
    /// The audit log (--audit-log-path, --audit-policy-file, --audit-log-max*).
    #[command(flatten)]
    pub audit: crate::apiserver::audit::Flags,
    /// The local agent's node settings.
    #[command(flatten)]
    pub node: crate::agent::NodeArgs,
}

pub(crate) fn go_duration(text: &str) -> Result<Duration, String> {
    crate::runtime::args::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration (e.g. 40s, 1m30s)"))
}

pub fn run(args: ServerArgs) -> anyhow::Result<i32> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("nanokube-server")
        .build()
        .context("starting the async runtime")?;
    let code = runtime.block_on(serve(args));
    // Everything worth keeping is stored by now; the controllers' watches and retries would
    // otherwise hold the exit up for as long as they take to notice.
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

/// The kubeconfig address for a bind address: loopback unless bound to one specific address.
fn client_host(bind: &str) -> String {
    match bind {
        "" | "0.0.0.0" | "::" => "127.0.0.1".to_string(),
        b if b.contains(':') => format!("[{b}]"),
        b => b.to_string(),
    }
}

fn kubeconfig(server: &str, pki: &tls::Pki) -> String {
    crate::apiserver::identity::kubeconfig(
        server,
        &pki.ca_cert_pem,
        &pki.admin_cert_pem,
        &pki.admin_key_pem,
    )
}

/// A client of this server acting as `user` in `groups` (a certificate signed by the cluster
/// CA), for the components that run inside the server process.
async fn identity(
    server: &str,
    pki: &tls::Pki,
    user: &str,
    groups: &[&str],
) -> anyhow::Result<kube::Client> {
    let (cert, key) = pki
        .issue_client(user, groups)
        .context("issuing a client certificate")?;
    crate::agent::client_from_kubeconfig(&crate::apiserver::identity::kubeconfig(
        server,
        &pki.ca_cert_pem,
        &cert,
        &key,
    ))
    .await
}

async fn serve(args: ServerArgs) -> anyhow::Result<i32> {
    let server_dir = args.data_dir.join("server");
    // The store first: it may hold the cluster's CA and keys (bootstrap data), which this
    // server then uses instead of making its own.
    let db_dir = server_dir.join("db");
    std::fs::create_dir_all(&db_dir).with_context(|| format!("creating {}", db_dir.display()))?;
    let compaction = sqlite::CompactionPolicy {
        interval: Duration::from_secs(args.compaction_interval_seconds.max(1)),
        keep_revisions: args.compaction_keep_revisions.max(0),
    };
    let endpoint = args.datastore_endpoint.as_deref();
    let raw = store::open_endpoint(endpoint, &db_dir.join("state.db"), Some(compaction))
        .await
        .context("opening the store")?;
    // The join token's secret, also when given in k3s's full form K10<ca hash>::server:<secret>.
    let (ca_hash, given) = match args.token.as_deref() {
        Some(t) => {
            let (hash, secret) = crate::apiserver::join::parse_token(t);
            (hash, Some(secret))
        }
        None => (None, None),
    };
    let secret = crate::apiserver::auth::load_or_make(&server_dir.join("token"), given)
        .context("the join token")?;
    let synced = bootstrap::sync(raw.as_ref(), &server_dir, &secret).await?;
    if synced == bootstrap::Synced::Joined {
        tracing::info!("bootstrap data: joined the cluster in the datastore");
    }
    // Agents on other hosts reach the server at the node's address, or a name given here.
    let mut sans = tls::default_sans(&args.bind_address);
    sans.extend(args.node.node_ip.iter().cloned());
    sans.extend(args.tls_san.iter().cloned());
    let pki = Arc::new(
        tls::Pki::load_or_create(&server_dir.join("tls"), &sans).context("cluster certificates")?,
    );
    if let Some(hash) = ca_hash {
        use sha2::Digest;
        let ours = hex::encode(sha2::Sha256::digest(pki.ca_cert_pem.as_bytes()));
        anyhow::ensure!(
            ours.eq_ignore_ascii_case(hash),
            "--token names CA sha256 {hash}, but this cluster's CA is {ours}: not this cluster's token"
        );
    }
    let auth = Authenticator::load(&server_dir, Some(&secret))
        .context("tokens")?
        .with_issuer(&args.service_account_issuer, &args.api_audiences);
    let auth = crate::apiserver::auth::Authenticator {
        anonymous: args.anonymous_auth,
        ..auth
    };
    // The token agents join with, in k3s's full form (it names the CA's hash), as k3s writes
    // its node-token.
    let node_token = crate::apiserver::join::full_token(&pki.ca_cert_pem, &auth.node_token);
    tls::write_private(
        &server_dir.join("node-token"),
        format!("{node_token}\n").as_bytes(),
    )
    .context("writing the node token")?;
    crate::apiserver::join::install(pki.clone());
    let store = crate::apiserver::secrets_encrypt::layer(
        raw.clone(),
        &server_dir,
        args.encryption_provider_config.as_deref(),
        args.secrets_encryption,
    )
    .await?;
    if synced == bootstrap::Synced::First {
        // Every shared file exists now (the encryption configuration was the last).
        bootstrap::save(raw.as_ref(), &server_dir, &secret).await?;
    }
    bootstrap::install(raw, server_dir.clone(), secret);
    crate::apiserver::secrets_encrypt::install(store.clone());
    let metrics = Arc::new(crate::apiserver::metrics::Metrics::default());
    let store = crate::apiserver::metrics::InstrumentedStore::wrap(store, metrics.clone());
    tracing::info!(
        revision = store.current_revision().await?,
        "store open: {}",
        endpoint.filter(|e| !e.is_empty()).map_or_else(
            || db_dir.join("state.db").display().to_string(),
            str::to_string
        )
    );

    let bind = if args.bind_address.contains(':') {
        format!("[{}]", args.bind_address)
    } else {
        args.bind_address.clone()
    };
    let listener = tokio::net::TcpListener::bind(format!("{bind}:{}", args.https_listen_port))
        .await
        .with_context(|| format!("listening on {bind}:{}", args.https_listen_port))?;
    let port = listener.local_addr()?.port();
    let server_url = format!("https://{}:{port}", client_host(&args.bind_address));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Service cluster IPs and node ports; the cluster DNS address is only given on request.
    let cluster_dns: std::net::Ipv4Addr = args.node.cluster_dns.parse().map_err(|_| {
        anyhow::anyhow!(
            "--cluster-dns {}: not an IPv4 address",
            args.node.cluster_dns
        )
    })?;
    crate::apiserver::allocation::install(crate::apiserver::allocation::Ranges {
        ips: crate::apiserver::allocation::IpRange::new(&args.service_cidr, &[cluster_dns])?,
        ports: args.service_node_port_range.parse()?,
    });
    // What each kubelet may read, filled from the store before the first request.
    let node_graph = crate::apiserver::authorization::node_graph::Shared::default();
    // Roles and bindings, likewise, so a decision never waits on the store.
    let rbac = crate::apiserver::authorization::rbac::RbacAuthorizer::default();
    let authorizer =
        crate::apiserver::authorization::chain(&args.authorization_mode, node_graph.clone(), &rbac)
            .map_err(|e| anyhow::anyhow!(e))?;
    let audit = crate::apiserver::audit::Log::from_flags(&args.audit)?;
    let api = Arc::new_cyclic(|me| Api {
        store: store.clone(),
        auth,
        shutdown: stopped.clone(),
        server_address: format!("{}:{port}", client_host(&args.bind_address)),
        me: me.clone(),
        registry: crate::apiserver::registry::Registry::builtin(),
        inflight: crate::apiserver::overload::Inflight::new(
            args.max_requests_inflight,
            args.max_mutating_requests_inflight,
        ),
        metrics,
        pipeline: crate::apiserver::pipeline::Pipeline {
            authorizer,
            // Pod logs, exec, attach and port-forward reach the pod's kubelet.
            connector: Arc::new(crate::apiserver::node_proxy::NodeConnector),
            audit,
            ..Default::default()
        },
    });
    node_graph.start(&api).await;
    rbac.start(&api).await;
    crate::apiserver::authorization::bootstrap_policy::reconcile(&api)
        .await
        .map_err(|e| anyhow::anyhow!("creating the bootstrap roles and bindings: {e}"))?;
    api.bootstrap()
        .await
        .map_err(|e| anyhow::anyhow!("creating the default namespaces: {e}"))?;
    // CustomResourceDefinitions become served kinds from here on.
    crate::apiserver::crd::controller::start(&api).await;
    let cluster_cidr: crate::network::Cidr = args
        .node
        .cluster_cidr
        .parse()
        .map_err(|e| anyhow::anyhow!("--cluster-cidr: {e}"))?;
    let kubelet_config = if args.disable_agent {
        None
    } else {
        Some((
            crate::agent::kubelet_config(&args.data_dir, &args.node)?,
            crate::agent::dns_config(&args.node)?,
        ))
    };
    // Pods reach the API server through the `kubernetes` service: at the node's address when
    // this server runs the node's agent, else the address it is bound to.
    let advertise = match (&kubelet_config, &args.node.node_ip) {
        (Some((cfg, _)), _) => cfg.node_ip.clone(),
        (None, Some(ip)) => ip.clone(),
        (None, None) => client_host(&args.bind_address)
            .trim_matches(['[', ']'])
            .to_string(),
    };
    // Only pods need it: a server that cannot write it still serves.
    let me = crate::apiserver::kubernetes_service::Me::new(&advertise, port);
    if let Err(e) = crate::apiserver::kubernetes_service::ensure(&api, &me).await {
        tracing::warn!(error = %e, "writing the kubernetes service and its endpoints");
    }
    let endpoints = tokio::spawn(crate::apiserver::kubernetes_service::run(
        api.clone(),
        me.clone(),
        stop.subscribe(),
    ));
    if !args.node.disable_cluster_dns {
        if let Err(e) = crate::apiserver::kubernetes_service::ensure_dns(&api, cluster_dns).await {
            tracing::warn!(error = %e, "writing the kube-dns service");
        }
    }
    let tls_config = pki.server_config().context("TLS configuration")?;
    // Written once the server can answer, so a client that finds it may use it at once.
    tls::write_private(
        &args.write_kubeconfig,
        kubeconfig(&server_url, &pki).as_bytes(),
    )
    .with_context(|| format!("writing the kubeconfig {}", args.write_kubeconfig.display()))?;
    tracing::info!("wrote kubeconfig {}", args.write_kubeconfig.display());
    tracing::info!(port, "API server listening on {bind}:{port} ({server_url})");
    let server = tokio::spawn(http::serve(
        api.clone(),
        listener,
        tls_config,
        stopped,
        Duration::from_secs(5),
    ));

    // In-process components reach the API through its socket like any client, each under its
    // own name.
    let (kc_cert, kc_key) = pki
        .issue_client("kube-apiserver-kubelet-client", &["system:masters"])
        .context("kubelet client certificate")?;
    crate::apiserver::node_proxy::install_kubelet_tls(tls::mutual_client_config(
        &pki.ca_cert_pem,
        &kc_cert,
        &kc_key,
    )?);
    // The controller manager and the scheduler act only while they hold their leader Lease,
    // so that several servers can run them (kube-system/kube-controller-manager and
    // kube-system/kube-scheduler, as upstream names them).
    let controllers = identity(&server_url, &pki, "system:kube-controller-manager", &[]).await?;
    let sa_client = |user: crate::apiserver::auth::User| {
        let (server_url, pki) = (server_url.clone(), pki.clone());
        async move {
            let groups: Vec<&str> = user
                .groups
                .iter()
                .map(String::as_str)
                .filter(|g| *g != "system:authenticated")
                .collect();
            identity(&server_url, &pki, &user.name, &groups).await
        }
    };
    let settings = crate::controllers::Settings {
        garbage_collector: sa_client(crate::apiserver::identity::garbage_collector()).await?,
        namespace_controller: sa_client(crate::apiserver::identity::namespace_controller()).await?,
        cluster_cidr,
        node_lifecycle: crate::controllers::nodelifecycle::Settings {
            grace: args.node_monitor_grace_period,
            period: args.node_monitor_period,
        },
        root_ca: pki.ca_cert_pem.clone(),
        certificates: crate::controllers::certificates::Settings {
            ca: pki.clone(),
            signing_duration: args.cluster_signing_duration,
            service_cidr: args.service_cidr.parse().ok(),
            reserved: sans.clone(),
        },
    };
    if args.disable_controller_manager {
        tracing::info!("controller manager disabled");
    } else {
        let leader = crate::controllers::leader::Election::new("kube-controller-manager");
        tokio::spawn(crate::controllers::leader::run(
            controllers.clone(),
            leader,
            move || crate::controllers::run(controllers.clone(), settings.clone()),
        ));
    }
    if args.disable.iter().any(|d| d == "servicelb") {
        tracing::info!("servicelb disabled: LoadBalancer services wait for another controller");
    } else {
        let lb = identity(&server_url, &pki, "system:nanokube-servicelb", &[]).await?;
        // Its own Lease, like the controller manager's: one server writes the addresses.
        let leader = crate::controllers::leader::Election::new("nanokube-servicelb");
        tokio::spawn(crate::controllers::leader::run(
            lb.clone(),
            leader,
            move || crate::controllers::servicelb::run(lb.clone()),
        ));
    }
    let scheduler = identity(&server_url, &pki, "system:kube-scheduler", &[]).await?;
    if args.disable_scheduler {
        tracing::info!("scheduler disabled");
    } else {
        let leader = crate::controllers::leader::Election::new("kube-scheduler");
        tokio::spawn(crate::controllers::leader::run(
            scheduler.clone(),
            leader,
            move || crate::scheduler::run(scheduler.clone()),
        ));
    }
    if let Some((mut cfg, dns)) = kubelet_config {
        cfg.service_cidr = args
            .service_cidr
            .parse()
            .map_err(|e| anyhow::anyhow!("--service-cidr: {e}"))?;
        let sans = vec![
            cfg.node_ip.clone(),
            cfg.node_name.clone(),
            "127.0.0.1".to_string(),
        ];
        let (cert, key) = pki
            .issue_serving(&cfg.node_name, &sans)
            .context("kubelet serving certificate")?;
        cfg.serving = Some(tls::mutual_server_config(&pki.ca_cert_pem, &cert, &key)?);
        let user = format!("system:node:{}", cfg.node_name);
        let client = identity(&server_url, &pki, &user, &["system:nodes"]).await?;
        tokio::spawn(async move {
            if let Err(e) = crate::agent::run_node(cfg, dns, client).await {
                tracing::error!(error = %e, "the local agent stopped");
            }
        });
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    let _ = stop.send(true);
    let _ = endpoints.await;
    // The other servers stop sending pods here at once, not when the lease goes stale.
    if let Err(e) = crate::apiserver::kubernetes_service::withdraw(&api, &me).await {
        tracing::warn!(error = %e, "taking this server out of the kubernetes service");
    }
    let _ = server.await;
    drop(api);
    drop(store);
    tracing::info!("stopped");
    Ok(0)
}
