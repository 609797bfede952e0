//! Real `nats-server` processes for the relay's tests and `feedtop bench`:
//! one JetStream node ([`NatsServer`]) or a three-node cluster
//! ([`NatsCluster`]), on free loopback ports, storing into a temp directory.
//!
//! NATS is the one peer the project does not simulate: the relay's promises
//! (acks, de-duplication, replicas) are the server's, so tests run the real
//! thing. Debian ships it (`apt-get install nats-server`, 2.9.x, in
//! `/usr/sbin`). Where it is missing, starting one is an error that says how
//! to install it: a test that skipped would hide a regression where CI can run
//! it.
//!
//! Everything here is blocking (std processes, a tiny HTTP/1.0 client for the
//! monitoring port): start-up takes well under a second, and `Drop` must be
//! able to stop a server anyway. Call it from `spawn_blocking` where a runtime
//! must keep running meanwhile.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a node may take to answer `/healthz` ok; it takes 10-30 ms for
/// one node and under a second for a cluster, so this is for a loaded CI box.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// How long a node may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Readiness polls start at `POLL` and back off to `POLL_MAX`: a node is
/// ready in ~20 ms, a cluster node that lost its meta leader in ~2 s, and
/// every failed `/healthz` writes a warning into the server's log.
const POLL: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(100);
/// Log lines quoted in an error.
const LOG_TAIL_LINES: usize = 25;

/// Why a NATS server could not be started or stopped.
#[derive(Debug)]
pub enum NatsError {
    /// No `nats-server` on `PATH` or in `/usr/sbin`.
    NotInstalled,
    /// Spawning, signalling or waiting on the process, or a temp directory.
    Io { what: String, source: io::Error },
    /// The process exited, or did not become ready in time; `log` is the tail
    /// of what it printed.
    NotReady { node: String, reason: String, log: String },
}

impl fmt::Display for NatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsError::NotInstalled => write!(
                f,
                "nats-server not found on PATH or in /usr/sbin: install it (`apt-get install nats-server`, \
                 Debian's 2.9.x); the NATS tests need a real server and do not skip"
            ),
            NatsError::Io { what, source } => write!(f, "{what}: {source}"),
            NatsError::NotReady { node, reason, log } => {
                write!(f, "nats-server {node} {reason}; the end of its log:\n{log}")
            }
        }
    }
}

impl std::error::Error for NatsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NatsError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl NatsError {
    fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> NatsError {
        let what = what.into();
        move |source| NatsError::Io { what, source }
    }

    /// The free-port race lost: another process took a port between our
    /// probe and the server's bind. Worth one retry on fresh ports.
    fn is_address_in_use(&self) -> bool {
        matches!(self, NatsError::NotReady { log, .. } if log.contains("address already in use"))
    }
}

/// The `nats-server` binary: `PATH` first, then Debian's `/usr/sbin` (not on
/// an ordinary user's `PATH`).
pub fn nats_server_binary() -> Result<PathBuf, NatsError> {
    find_binary(std::env::var_os("PATH"), &["/usr/sbin", "/usr/local/sbin"])
}

fn find_binary(path: Option<std::ffi::OsString>, fallbacks: &[&str]) -> Result<PathBuf, NatsError> {
    let on_path = path.map(|path| std::env::split_paths(&path).collect::<Vec<_>>()).unwrap_or_default();
    on_path
        .into_iter()
        .chain(fallbacks.iter().map(PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or(NatsError::NotInstalled)
}

/// A port nothing listens on right now. The listener is dropped before the
/// server binds it, so another process can take it meanwhile; starts retry
/// once on "address already in use".
fn free_port() -> Result<u16, NatsError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(NatsError::io("binding a free port"))?;
    let port = listener.local_addr().map_err(NatsError::io("reading a free port"))?.port();
    Ok(port)
}

/// One `nats-server` process and what it needs to be started again the same
/// way: its ports, store directory and log file.
#[derive(Debug)]
struct Node {
    name: String,
    binary: PathBuf,
    client_port: u16,
    http_port: u16,
    /// `(own cluster port, the other nodes' cluster ports)` when clustered.
    cluster: Option<(u16, Vec<u16>)>,
    store_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    /// More command-line options (authentication, TLS).
    extra: Vec<String>,
}

impl Node {
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "-js".into(),
            "-sd".into(),
            self.store_dir.display().to_string(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.client_port.to_string(),
            "-m".into(),
            self.http_port.to_string(),
            "-n".into(),
            self.name.clone(),
        ];
        if let Some((own, others)) = &self.cluster {
            let routes: Vec<String> = others.iter().map(|port| format!("nats://127.0.0.1:{port}")).collect();
            args.extend([
                "--cluster_name".into(),
                "feedtop".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{own}"),
                "--routes".into(),
                routes.join(","),
            ]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Spawns the process; its output is appended to the log file, so a
    /// restart's log follows the previous run's.
    fn spawn(&mut self) -> Result<(), NatsError> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(NatsError::io(format!("opening {}", self.log_path.display())))?;
        let log_err = log.try_clone().map_err(NatsError::io("duplicating the log file"))?;
        let child = Command::new(&self.binary)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(NatsError::io(format!("starting {}", self.binary.display())))?;
        self.child = Some(child);
        Ok(())
    }

    fn not_ready(&self, reason: impl Into<String>) -> NatsError {
        NatsError::NotReady { node: self.name.clone(), reason: reason.into(), log: log_tail(&self.log_path) }
    }

    /// Ready for JetStream: `/healthz` says ok (in 2.9 that includes "JetStream
    /// has contact with a meta leader"), the client port accepts, and in a
    /// cluster `/jsz` names the meta leader.
    fn wait_ready(&mut self) -> Result<(), NatsError> {
        let deadline = Instant::now() + READY_DEADLINE;
        let mut pause = POLL;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(self.not_ready(format!("exited during start-up ({status})")));
                }
            } else {
                return Err(self.not_ready("is not running"));
            }
            let why = match self.readiness() {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(self.not_ready(format!("not ready after {READY_DEADLINE:?}: {why}")));
            }
            thread::sleep(pause);
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    fn readiness(&self) -> Result<(), String> {
        let health = http_get(self.http_port, "/healthz")?;
        let health: serde_json::Value = serde_json::from_str(&health).map_err(|e| format!("/healthz: {e}"))?;
        if health["status"] != "ok" {
            return Err(format!("/healthz says {health}"));
        }
        TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, self.client_port)), Duration::from_secs(1))
            .map_err(|e| format!("client port {}: {e}", self.client_port))?;
        if self.cluster.is_some() {
            let jsz = http_get(self.http_port, "/jsz")?;
            let jsz: serde_json::Value = serde_json::from_str(&jsz).map_err(|e| format!("/jsz: {e}"))?;
            let leader = jsz["meta_cluster"]["leader"].as_str().unwrap_or("");
            if leader.is_empty() {
                return Err("no JetStream meta leader yet".into());
            }
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within the grace period.
    fn stop(&mut self) -> Result<(), NatsError> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        terminate(&child);
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
                Ok(None) => break,
                Err(e) => return Err(NatsError::Io { what: format!("waiting for {}", self.name), source: e }),
            }
        }
        tracing::warn!(node = %self.name, "nats-server ignored SIGTERM for {STOP_GRACE:?}; killing it");
        let _ = child.kill();
        child.wait().map(drop).map_err(NatsError::io(format!("waiting for {}", self.name)))
    }

    /// SIGKILL: a crash, as far as the store and the clients can tell.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(unix)]
fn terminate(child: &Child) {
    match libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of a child we have not yet waited for,
        // so it cannot have been reused.
        Ok(pid) => unsafe {
            libc::kill(pid, libc::SIGTERM);
        },
        Err(_) => tracing::warn!("nats-server pid {} does not fit pid_t", child.id()),
    }
}

#[cfg(not(unix))]
fn terminate(_child: &Child) {
    // No SIGTERM here; `stop` falls through to kill after the grace period.
}

/// `GET path` on the monitoring port, HTTP/1.0 so the body ends at EOF.
fn http_get(port: u16, path: &str) -> Result<String, String> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout)
        .map_err(|e| format!("monitoring port {port}: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").map_err(|e| format!("GET {path}: {e}"))?;
    let mut response = String::new();
    stream.take(1 << 20).read_to_string(&mut response).map_err(|e| format!("GET {path}: {e}"))?;
    match response.split_once("\r\n\r\n") {
        Some((_head, body)) => Ok(body.to_string()),
        None => Err(format!("GET {path}: no HTTP response body")),
    }
}

/// The last lines of a server's log, without the warning each failed
/// `/healthz` poll adds (they would push the real cause out of the tail).
fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().filter(|line| !line.contains("Healthcheck failed")).collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    if tail.is_empty() {
        format!("({} is empty)", path.display())
    } else {
        tail.join("\n")
    }
}

fn temp_dir() -> Result<tempfile::TempDir, NatsError> {
    tempfile::Builder::new().prefix("feedtop-nats-").tempdir().map_err(NatsError::io("creating a temp directory"))
}

/// One JetStream node on `127.0.0.1`, storing into a temp directory that
/// goes away with it. Dropping it kills the process.
#[derive(Debug)]
pub struct NatsServer {
    node: Node,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a node and returns once it is ready for JetStream.
    pub fn start() -> Result<Self, NatsError> {
        Self::start_with(&[])
    }

    /// [`NatsServer::start`] with more `nats-server` options, e.g.
    /// `["--user", "u", "--pass", "p"]` or `["--tls", "--tlscert", …]`.
    pub fn start_with(extra: &[&str]) -> Result<Self, NatsError> {
        match Self::try_start(extra) {
            Err(e) if e.is_address_in_use() => Self::try_start(extra),
            other => other,
        }
    }

    fn try_start(extra: &[&str]) -> Result<Self, NatsError> {
        let binary = nats_server_binary()?;
        let dir = temp_dir()?;
        let mut node = Node {
            name: "node0".into(),
            binary,
            client_port: free_port()?,
            http_port: free_port()?,
            cluster: None,
            store_dir: dir.path().join("store"),
            log_path: dir.path().join("nats-server.log"),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        node.spawn()?;
        node.wait_ready()?;
        Ok(Self { node, _dir: dir })
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.node.url()
    }

    pub fn port(&self) -> u16 {
        self.node.client_port
    }

    /// The monitoring port (`/healthz`, `/jsz`, `/varz`).
    pub fn monitor_port(&self) -> u16 {
        self.node.http_port
    }

    /// JetStream's store directory: kept across `stop`/`kill` and `restart`.
    pub fn store_dir(&self) -> &Path {
        &self.node.store_dir
    }

    /// Everything the server printed, across restarts.
    pub fn log_path(&self) -> &Path {
        &self.node.log_path
    }

    pub fn is_running(&self) -> bool {
        self.node.child.is_some()
    }

    /// A clean shutdown: SIGTERM, SIGKILL after a few seconds.
    pub fn stop(&mut self) -> Result<(), NatsError> {
        self.node.stop()
    }

    /// SIGKILL, for crash tests.
    pub fn kill(&mut self) {
        self.node.kill();
    }

    /// Stops the server if it runs, then starts it again on the same ports
    /// with the same store, and waits until it is ready.
    pub fn restart(&mut self) -> Result<(), NatsError> {
        self.node.stop()?;
        self.node.spawn()?;
        self.node.wait_ready()
    }
}

/// JetStream nodes clustered on loopback (`--cluster_name feedtop`), each
/// with its own client, monitoring and cluster port and store directory.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` nodes (3 for a quorum that survives one loss) and
    /// returns once every node is healthy and sees a JetStream meta leader.
    pub fn start(size: usize) -> Result<Self, NatsError> {
        match Self::try_start(size) {
            Err(e) if e.is_address_in_use() => Self::try_start(size),
            other => other,
        }
    }

    fn try_start(size: usize) -> Result<Self, NatsError> {
        let binary = nats_server_binary()?;
        let dir = temp_dir()?;
        let cluster_ports = (0..size).map(|_| free_port()).collect::<Result<Vec<_>, _>>()?;
        let mut nodes = Vec::with_capacity(size);
        for (i, &own) in cluster_ports.iter().enumerate() {
            let others = cluster_ports.iter().copied().filter(|&port| port != own).collect();
            nodes.push(Node {
                name: format!("node{i}"),
                binary: binary.clone(),
                client_port: free_port()?,
                http_port: free_port()?,
                cluster: Some((own, others)),
                store_dir: dir.path().join(format!("node{i}")),
                log_path: dir.path().join(format!("node{i}.log")),
                child: None,
                extra: Vec::new(),
            });
        }
        // All spawned before any is waited on: a meta leader needs a quorum.
        for node in &mut nodes {
            node.spawn()?;
        }
        for node in &mut nodes {
            node.wait_ready()?;
        }
        Ok(Self { nodes, _dir: dir })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node's client URL, comma-joined, as a user would pass them.
    /// async-nats 0.46 does not split such a string itself (`connect("a,b")`
    /// fails with "invalid port number"): parse each part into a `ServerAddr`
    /// and connect with the `Vec`, or use [`NatsCluster::url_list`].
    pub fn urls(&self) -> String {
        self.url_list().join(",")
    }

    /// Every node's client URL.
    pub fn url_list(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    pub fn node_url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    pub fn node_port(&self, i: usize) -> u16 {
        self.nodes[i].client_port
    }

    pub fn node_log_path(&self, i: usize) -> &Path {
        &self.nodes[i].log_path
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// SIGTERM node `i` (SIGKILL after a few seconds).
    pub fn stop_node(&mut self, i: usize) -> Result<(), NatsError> {
        self.nodes[i].stop()
    }

    /// SIGKILL node `i`.
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again on its ports and store; returns once it is
    /// healthy and back in contact with the meta leader.
    pub fn start_node(&mut self, i: usize) -> Result<(), NatsError> {
        let node = &mut self.nodes[i];
        node.spawn()?;
        node.wait_ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthz(port: u16) -> Result<String, String> {
        http_get(port, "/healthz")
    }

    #[test]
    fn a_node_starts_ready_restarts_on_the_same_ports_and_store_and_can_be_killed() {
        let mut server = NatsServer::start().expect("start nats-server");
        assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
        assert!(healthz(server.monitor_port()).unwrap().contains("ok"));
        // JetStream writes its store under the directory it was given.
        assert!(server.store_dir().join("jetstream").is_dir(), "{}", server.store_dir().display());
        let (port, store) = (server.port(), server.store_dir().to_path_buf());

        server.kill();
        assert!(!server.is_running());
        assert!(healthz(server.monitor_port()).is_err(), "a killed server still answers");
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "a killed server still accepts");

        server.restart().expect("restart");
        assert_eq!((server.port(), server.store_dir()), (port, store.as_path()));
        TcpStream::connect(("127.0.0.1", port)).expect("the restarted server accepts on its old port");

        server.stop().expect("stop");
        assert!(!server.is_running());
        let log = std::fs::read_to_string(server.log_path()).unwrap();
        assert_eq!(log.matches("Server is ready").count(), 2, "{log}");
        assert!(log.contains("Server Exiting"), "SIGTERM is a clean shutdown: {log}");
    }

    #[test]
    fn the_temp_directory_and_process_go_away_on_drop() {
        let server = NatsServer::start().expect("start nats-server");
        let (dir, port) = (server.store_dir().parent().unwrap().to_path_buf(), server.port());
        drop(server);
        assert!(!dir.exists(), "{} is left behind", dir.display());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn a_server_that_cannot_start_says_why_with_its_log() {
        let dir = temp_dir().unwrap();
        let taken = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let mut node = Node {
            name: "node0".into(),
            binary: nats_server_binary().expect("nats-server installed"),
            client_port: taken.local_addr().unwrap().port(),
            http_port: free_port().unwrap(),
            cluster: None,
            store_dir: dir.path().join("store"),
            log_path: dir.path().join("nats-server.log"),
            child: None,
            extra: Vec::new(),
        };
        node.spawn().unwrap();
        let err = node.wait_ready().unwrap_err();
        assert!(err.is_address_in_use(), "{err}");
        assert!(err.to_string().contains("exited during start-up"), "{err}");
    }

    #[test]
    fn the_log_tail_in_an_error_leaves_out_the_health_poll_warnings() {
        let dir = temp_dir().unwrap();
        let path = dir.path().join("nats-server.log");
        let mut log = String::from("[1] [FTL] Error listening on port: 127.0.0.1:4222, \"address already in use\"\n");
        for _ in 0..100 {
            log.push_str(
                "[1] [WRN] Healthcheck failed: \"JetStream has not established contact with a meta leader\"\n",
            );
        }
        std::fs::write(&path, log).unwrap();
        assert_eq!(log_tail(&path), "[1] [FTL] Error listening on port: 127.0.0.1:4222, \"address already in use\"");
    }

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let empty = temp_dir().unwrap();
        let nowhere = empty.path().to_str().unwrap();
        let err = find_binary(Some(nowhere.into()), &[nowhere]).unwrap_err();
        assert!(matches!(err, NatsError::NotInstalled), "{err}");
        let message = err.to_string();
        assert!(message.contains("apt-get install nats-server"), "{message}");
        // Debian's /usr/sbin is searched even where it is not on PATH.
        let sbin = find_binary(None, &[nowhere, "/usr/sbin"]).expect("nats-server in /usr/sbin");
        assert_eq!(sbin, Path::new("/usr/sbin/nats-server"));
    }

    #[test]
    fn a_cluster_elects_a_meta_leader_and_survives_a_node_restart() {
        let mut cluster = NatsCluster::start(3).expect("start a 3-node cluster");
        assert_eq!(cluster.urls().split(',').count(), 3);
        for i in 0..3 {
            let jsz = http_get(cluster.nodes[i].http_port, "/jsz").unwrap();
            let jsz: serde_json::Value = serde_json::from_str(&jsz).unwrap();
            assert_eq!(jsz["meta_cluster"]["cluster_size"], 3, "{jsz}");
        }
        cluster.stop_node(1).unwrap();
        assert!(!cluster.is_running(1));
        cluster.start_node(1).expect("node1 rejoins");
        assert!(cluster.is_running(1));
    }
}
