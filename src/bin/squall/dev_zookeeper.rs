//! `squall dev-zookeeper`: a throwaway single-node ZooKeeper on loopback,
//! from Debian's `zookeeper` package, for trying Squall on one machine.

use anyhow::{bail, Context};
use std::path::PathBuf;

const JAR: &str = "/usr/share/java/zookeeper.jar";

/// Runs ZooKeeper in the foreground on `127.0.0.1:port` until interrupted.
pub fn run(port: u16, dir: Option<PathBuf>) -> anyhow::Result<i32> {
    if !std::path::Path::new(JAR).is_file() {
        bail!("ZooKeeper is not installed ({JAR} missing): apt-get install zookeeper default-jre-headless");
    }
    let (dir, _temp) = match dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::tempdir().context("cannot create a data directory")?;
            (t.path().to_owned(), Some(t))
        }
    };
    std::fs::create_dir_all(dir.join("data"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let cfg = dir.join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n4lw.commands.whitelist=ruok\nmaxSessionTimeout=60000\n",
            dir.join("data").display()
        ),
    )
    .with_context(|| format!("cannot write {}", cfg.display()))?;
    eprintln!(
        "squall dev-zookeeper: ZooKeeper on 127.0.0.1:{port}, data in {} (Ctrl-C stops it)",
        dir.display()
    );
    let status = std::process::Command::new("java")
        .args(["-Xmx256m", "-cp", &format!("{JAR}:/usr/share/java/*")])
        .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
        .arg(&cfg)
        .status()
        .context("cannot run java (apt-get install default-jre-headless)")?;
    Ok(status.code().unwrap_or(1))
}
