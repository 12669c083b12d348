//! The sandbox against the real kernel. Needs root (full isolation); elsewhere each test
//! checks the degraded report and returns.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tusk_sandbox::{InstanceConfig, InstanceSandbox, Level, Mode, Network, Options, Sandbox};

struct Fixture {
    sandbox: Sandbox,
    code: PathBuf,
    runtime: PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let code = dir.path().join("code");
        let runtime = dir.path().join("runtime");
        std::fs::create_dir_all(&code).unwrap();
        std::fs::create_dir_all(&runtime).unwrap();
        std::fs::write(code.join("hello.txt"), "hello from the package\n").unwrap();
        std::fs::write(runtime.join("bootstrap.php"), "<?php\n").unwrap();
        let mut options = Options::new(Mode::Auto, dir.path().join("run"));
        // Freeze right away so the tests can watch it happen.
        options.freeze_after = Some(Duration::ZERO);
        let sandbox = Sandbox::init(options).unwrap();
        eprintln!("{}", sandbox.report());
        Fixture {
            sandbox,
            code,
            runtime,
            _dir: dir,
        }
    })
}

fn full() -> Option<&'static Fixture> {
    let f = fixture();
    if f.sandbox.level() == Level::Full {
        Some(f)
    } else {
        eprintln!("skipped: full isolation needs root");
        None
    }
}

fn instance(f: &Fixture, id: &str, memory_mb: u32, network: Network) -> Arc<InstanceSandbox> {
    Arc::new(
        f.sandbox
            .prepare(&InstanceConfig {
                id,
                code_dir: &f.code,
                runtime_dir: &f.runtime,
                memory_mb,
                tmp_mb: 8,
                network,
                volumes: &[],
            })
            .unwrap(),
    )
}

/// Runs `sh -c script` in the instance's sandbox; returns (exit code, stdout+stderr).
async fn sh(inst: &InstanceSandbox, script: &str) -> (Option<i32>, String) {
    let script = script.to_string();
    let (_, child) = inst
        .spawn(
            || Ok(()),
            move |_| {
                let mut cmd = tokio::process::Command::new("/bin/sh");
                cmd.args(["-c", &script])
                    .env_clear()
                    .env("PATH", "/usr/bin:/bin")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                Ok(cmd)
            },
        )
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[tokio::test]
async fn sees_the_contract_and_nothing_of_the_host() {
    let Some(f) = full() else { return };
    let inst = instance(f, "t-contract", 128, Network::Host);
    let (code, out) = sh(
        &inst,
        "id -u; pwd; cat /var/task/hello.txt; ls /opt; echo pid=$$; \
         test -e /etc/shadow && echo SHADOW; test -e /root && echo ROOT; \
         ls /proc | grep -c '^[0-9]'; \
         touch /var/task/x 2>/dev/null && echo WROTE-TASK; touch /x 2>/dev/null && echo WROTE-ROOT; \
         touch /etc/x 2>/dev/null && echo WROTE-ETC; echo ok > /tmp/y && cat /tmp/y; \
         grep NoNewPrivs /proc/self/status; cat /proc/self/cgroup",
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let uid: u32 = lines[0].parse().unwrap();
    assert!(uid >= tusk_sandbox::UID_BASE, "{out}");
    assert_eq!(Some(uid), inst.uid());
    assert_eq!(lines[1], "/var/task");
    assert_eq!(lines[2], "hello from the package");
    assert_eq!(lines[3], "bootstrap.php");
    assert_eq!(lines[4], "pid=1");
    assert!(!out.contains("SHADOW") && !out.contains("ROOT\n"), "{out}");
    assert!(!out.contains("WROTE"), "{out}");
    // sh, ls, grep (and maybe the pipe's subshell): only our own processes.
    let procs: u32 = lines[5].parse().unwrap();
    assert!(procs <= 4, "{out}");
    assert!(out.contains("\nok\n"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("0::/"), "{out}");
}

#[tokio::test]
async fn seccomp_refuses_namespaces_but_not_ordinary_work() {
    let Some(f) = full() else { return };
    let inst = instance(f, "t-seccomp", 128, Network::Host);
    let (code, out) = sh(
        &inst,
        "grep '^Seccomp:' /proc/self/status; unshare -Ur true 2>&1; echo unshare=$?; \
         (echo sub) | cat; echo data > /tmp/z && cat /tmp/z",
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("unshare=1"), "{out}");
    assert!(out.contains("sub\ndata\n"), "{out}");
}

#[tokio::test]
async fn tmp_is_capped() {
    let Some(f) = full() else { return };
    let inst = instance(f, "t-tmp", 128, Network::Host);
    let (_, out) = sh(
        &inst,
        "head -c 20000000 /dev/zero > /tmp/big; echo rc=$?; wc -c < /tmp/big",
    )
    .await;
    assert!(out.contains("No space left"), "{out}");
    assert!(out.contains("8388608"), "{out}");
}

#[tokio::test]
async fn memory_limit_kills_and_is_reported() {
    let Some(f) = full() else { return };
    let inst = instance(f, "t-oom", 32, Network::Host);
    let (code, out) = sh(
        &inst,
        "php -n -d memory_limit=-1 -r '$a = str_repeat(\"x\", 200000000); echo strlen($a);'",
    )
    .await;
    assert!(inst.oom_killed(), "{code:?} {out}");
    let peak = inst.peak_memory_bytes().unwrap();
    assert!(peak <= 33 << 20 && peak > 16 << 20, "peak {peak}");
}

#[tokio::test]
async fn network_none_reaches_only_its_own_listener() {
    let Some(f) = full() else { return };
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host.local_addr().unwrap().port();
    let inst = instance(f, "t-net", 128, Network::None);
    let (own, child) = inst
        .spawn(
            || std::net::TcpListener::bind("127.0.0.1:0"),
            move |own: &std::net::TcpListener| {
                let own_port = own.local_addr()?.port();
                let script = format!(
                    "php -n -r 'foreach ([{own_port}, {host_port}] as $p) {{ $s = @fsockopen(\"127.0.0.1\", $p, $e, $m, 1); echo $p, \"=\", $s ? \"ok\" : \"refused\", \"\\n\"; }}'"
                );
                let mut cmd = tokio::process::Command::new("/bin/sh");
                cmd.args(["-c", &script])
                    .env_clear()
                    .env("PATH", "/usr/bin:/bin")
                    .stdout(std::process::Stdio::piped());
                Ok(cmd)
            },
        )
        .await
        .unwrap();
    let own_port = own.local_addr().unwrap().port();
    let out = child.wait_with_output().await.unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains(&format!("{own_port}=ok")), "{out}");
    assert!(out.contains(&format!("{host_port}=refused")), "{out}");
}

#[tokio::test]
async fn frozen_instances_use_no_cpu_and_die_whole() {
    let Some(f) = full() else { return };
    let inst = instance(f, "t-freeze", 1769, Network::Host);
    let (_, mut child) = inst
        .spawn(
            || Ok(()),
            |_| {
                let mut cmd = tokio::process::Command::new("/bin/sh");
                // A busy background loop the "handler" leaves behind, and a foreground sleep.
                cmd.args(["-c", "(while :; do :; done) & sleep 1000"])
                    .env_clear()
                    .env("PATH", "/usr/bin:/bin");
                Ok(cmd)
            },
        )
        .await
        .unwrap();
    inst.initialized();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pids = inst.pids();
    assert!(pids.len() >= 2, "{pids:?}");
    let cpu = |pids: &[i32]| -> u64 {
        pids.iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
            .map(|s| {
                let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
                f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
            })
            .sum()
    };
    inst.pause();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = cpu(&pids);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cpu(&pids), before, "a frozen instance used CPU");

    // Thaw cost on the warm path.
    let mut samples = Vec::new();
    for _ in 0..50 {
        inst.pause();
        let t = Instant::now();
        inst.resume();
        samples.push(t.elapsed());
    }
    samples.sort();
    eprintln!("thaw: median {:?}, p90 {:?}", samples[25], samples[45]);

    inst.resume();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cpu(&pids) > before, "a thawed instance did not run");

    inst.pause();
    // Kill the main process (PID 1 of the namespace) and everything else goes with it.
    child.start_kill().unwrap();
    inst.kill_all();
    let _ = child.wait().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for p in &pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists()
                || std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "pid {p} survived"
        );
    }
}

#[tokio::test]
async fn spawn_errors_name_the_failing_step() {
    let Some(f) = full() else { return };
    let inst = instance(f, "t-err", 128, Network::Host);
    let err = inst
        .spawn(
            || Ok(()),
            |_| Ok(tokio::process::Command::new("/var/task/does-not-exist")),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("No such file"), "{err}");
}

/// What a sandboxed spawn costs, phase by phase (`cargo test --release -p tusk-sandbox --test
/// sandbox spawn_cost -- --ignored --nocapture`).
#[tokio::test]
#[ignore]
async fn spawn_cost() {
    let Some(f) = full() else { return };
    let rounds = 40;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    for (program, args) in [
        ("/bin/true", vec![]),
        ("/usr/bin/php8.2", vec!["-r", ""]),
        (
            "/usr/bin/php8.2",
            vec!["-d", "opcache.enable_cli=1", "-r", ""],
        ),
    ] {
        let mut plain = Vec::new();
        let mut prepare = Vec::new();
        let mut sandboxed = Vec::new();
        for i in 0..rounds {
            let t = Instant::now();
            let mut c = tokio::process::Command::new(program)
                .args(&args)
                .spawn()
                .unwrap();
            c.wait().await.unwrap();
            plain.push(t.elapsed());

            let t = Instant::now();
            let inst = instance(f, &format!("cost-{i}"), 1024, Network::Host);
            prepare.push(t.elapsed());
            let t = Instant::now();
            let a = args.clone();
            let (_, mut c) = inst
                .spawn(
                    || Ok(()),
                    move |_| {
                        let mut c = tokio::process::Command::new(program);
                        c.args(&a);
                        Ok(c)
                    },
                )
                .await
                .unwrap();
            c.wait().await.unwrap();
            sandboxed.push(t.elapsed());
        }
        eprintln!(
            "{program} {args:?}: plain {:?}; sandboxed: prepare (cgroup) {:?} + spawn {:?}",
            median(plain),
            median(prepare),
            median(sandboxed)
        );
    }
}

/// Freezer cost on the warm path, for an idle runtime blocked in a read (`cargo test --release
/// -p tusk-sandbox --test sandbox freeze_cost -- --ignored --nocapture`).
#[tokio::test]
#[ignore]
async fn freeze_cost() {
    let Some(f) = full() else { return };
    let inst = instance(f, "freeze-cost", 1024, Network::Host);
    let (_, mut child) = inst
        .spawn(
            || Ok(()),
            |_| {
                let mut c = tokio::process::Command::new("/usr/bin/php8.2");
                c.args(["-r", "fgets(STDIN);"])
                    .stdin(std::process::Stdio::piped());
                Ok(c)
            },
        )
        .await
        .unwrap();
    inst.initialized();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut freeze, mut thaw) = (Vec::new(), Vec::new());
    for _ in 0..300 {
        let t = Instant::now();
        inst.pause();
        freeze.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(2)).await;
        let t = Instant::now();
        inst.resume();
        thaw.push(t.elapsed());
    }
    freeze.sort();
    thaw.sort();
    eprintln!(
        "freeze: median {:?} p90 {:?}; thaw: median {:?} p90 {:?}",
        freeze[150], freeze[270], thaw[150], thaw[270]
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

#[tokio::test]
async fn volumes_are_writable_persistent_and_shared_by_one_uid() {
    let Some(f) = full() else { return };
    let host = f._dir.path().join("volumes").join("wiki");
    let volumes = [tusk_sandbox::Volume {
        name: "wiki".into(),
        host_dir: host.clone(),
        mount_path: "/mnt/wiki".into(),
    }];
    let prepare = |id: &str| {
        Arc::new(
            f.sandbox
                .prepare(&InstanceConfig {
                    id,
                    code_dir: &f.code,
                    runtime_dir: &f.runtime,
                    memory_mb: 128,
                    tmp_mb: 8,
                    network: Network::Host,
                    volumes: &volumes,
                })
                .unwrap(),
        )
    };
    let first = prepare("t-vol-1");
    let (code, out) = sh(
        &first,
        "echo page > /mnt/wiki/page.txt && chmod 600 /mnt/wiki/page.txt && id -u",
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        std::fs::read_to_string(host.join("page.txt")).unwrap(),
        "page\n"
    );
    // A later instance (another process, same volume) reads and rewrites the 0600 file.
    let second = prepare("t-vol-2");
    assert_eq!(first.uid(), second.uid());
    let (code, out) = sh(
        &second,
        "cat /mnt/wiki/page.txt && echo more >> /mnt/wiki/page.txt && id -u",
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("page\n"), "{out}");
    assert_eq!(
        std::fs::read_to_string(host.join("page.txt")).unwrap(),
        "page\nmore\n"
    );
}
