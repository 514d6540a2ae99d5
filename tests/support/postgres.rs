//! A throwaway PostgreSQL cluster for the tests: `initdb` and `pg_ctl` from Debian's
//! `postgresql` package, in a temporary directory, on a free loopback port, stopped on drop.
//! `initdb` refuses root, so a test running as root runs them as the `postgres` user.
//! Without the package the tests fail, naming it (`bash tests/setup.sh` installs it). Shared
//! with the benchmark (`host/benches/webhook/postgres.rs`), so it depends on nothing else here.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running cluster; stopped (immediately) and removed on drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    as_postgres: bool,
}

/// The directory holding `initdb` and `pg_ctl`: `PLUGBOARD_PG_BIN`, Debian's
/// `/usr/lib/postgresql/<version>/bin` (newest), or the `PATH`.
fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("PLUGBOARD_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    if let Some(bin) = versions.pop() {
        return bin;
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Some(dir) = path.parent() {
            return dir.to_owned();
        }
    }
    panic!(
        "PostgreSQL's initdb and pg_ctl were not found: install the Debian package `postgresql` \
         (`bash tests/setup.sh` does), or set PLUGBOARD_PG_BIN to the directory holding them"
    );
}

/// A free loopback port (bound, read, released); the cluster binds it right after.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgCluster {
    /// Creates and starts a cluster with trust authentication for the `postgres` user.
    pub fn start() -> PgCluster {
        PgCluster::start_with("")
    }

    /// [`PgCluster::start`] with more server options (`-c name=value ...`).
    pub fn start_with(extra_options: &str) -> PgCluster {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("plugboard-pg-")
            .tempdir()
            .expect("a temporary directory");
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "cannot give the cluster directory to the postgres user"
            );
        }
        let data = dir.path().join("data");
        let cluster = PgCluster {
            port: free_port(),
            dir,
            bin,
            as_postgres,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 {extra_options}",
            cluster.port,
            path_str(cluster.dir.path())
        );
        let log = cluster.dir.path().join("postgres.log");
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-o",
                &options,
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        cluster
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let output = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .current_dir(self.dir.path())
                .output()
        } else {
            Command::new(&program)
                .args(args)
                .current_dir(self.dir.path())
                .output()
        }
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The URL of database `name` (which [`PgCluster::create_database`] made).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("connecting to the test cluster");
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        drop(client);
        let _ = task.await;
        self.url(name)
    }

    /// The process id of the cluster's postmaster (its backends are its children).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pid = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).ok()?;
        pid.lines().next()?.trim().parse().ok()
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let program = self.bin.join("pg_ctl");
        let args = ["-D", path_str(&data), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        };
    }
}
