//! `srewatch config check`, `SREWATCH_CONFIG` and start-up warnings, as real processes.

use crate::service::Run;
use crate::util;
use std::path::Path;
use std::time::Duration;

/// Nine problems: a syntax error, an unknown key, a wrong type, a missing key, a duplicate
/// Kamailio hostname and four bad values.
const NINE_PROBLEMS: &str = include_str!("../fixtures/config/nine-problems.toml");

/// `srewatch config check` of the file `SREWATCH_CONFIG` names: exit code and stdout.
pub(crate) fn check(env_file: &Path) -> (Option<i32>, String) {
    let out = util::srewatch()
        .args(["config", "check"])
        .env("SREWATCH_CONFIG", env_file)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Every problem of a file in one run, the file named by `SREWATCH_CONFIG`.
#[test]
fn config_check_lists_every_problem_of_the_srewatch_config_file() {
    let dir = util::tempdir();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, NINE_PROBLEMS).unwrap();
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let at: Vec<String> = [2, 4, 5, 7, 10, 11, 12, 18, 22]
        .iter()
        .map(|l| format!("{}:{l}: ", cfg.display()))
        .collect();
    assert_eq!(lines.len(), 9, "{out}");
    for (line, want) in lines.iter().zip(&at) {
        assert!(
            line.starts_with(want.as_str()),
            "{line:?} vs {want:?}\n{out}"
        );
    }
    assert!(
        lines[7].ends_with("kamailio[1].hostname: \"k1\" is also the hostname of kamailio[0]: their series would collide"),
        "{out}"
    );
    // `run` refuses the same file from the same variable, with the same lines.
    let run = util::srewatch()
        .arg("run")
        .env("SREWATCH_CONFIG", &cfg)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(err.lines().take(9).collect::<Vec<_>>(), lines, "{err}");
}

/// `ingest` reads the file `SREWATCH_CONFIG` names.
#[test]
fn ingest_honours_srewatch_config() {
    let dir = util::tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join("counters.csv"),
        "cp0,stat0,2026-01-01T00:00:00,1767225600,5,4,3,2,1,0,0,0,0,0,0,0,0,0,0\n",
    )
    .unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, format!("[ingest]\ndir = \"{}\"\n", data.display())).unwrap();
    let stdout = util::run_ok(
        util::srewatch()
            .args(["ingest", "--once"])
            .env("SREWATCH_CONFIG", &cfg),
    );
    assert!(
        stdout.contains("stat0,hostname=cp0 value=5i 1767225600\n"),
        "{stdout}"
    );
}

/// `config check` warns (exit 0) about a probe target that does not resolve now.
#[test]
fn config_check_warns_about_a_name_that_does_not_resolve() {
    let dir = util::tempdir();
    let cfg = dir.path().join("s.toml");
    std::fs::write(
        &cfg,
        "[[probe.target]]\nname = \"cp1\"\nuri = \"sip:127.0.0.1\"\n\n[[probe.target]]\nname = \"cpx\"\nuri = \"sip:no-such-cp.invalid:5090\"\n",
    )
    .unwrap();
    let (code, out) = check(&cfg);
    assert_eq!(code, Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "{}:7: warning: probe.target[1].uri: no-such-cp.invalid does not resolve now (",
            cfg.display()
        )),
        "{out}"
    );
    assert!(
        lines[0].ends_with("); srewatch run starts and retries it"),
        "{out}"
    );
    assert_eq!(lines[1], format!("{}: OK", cfg.display()));
}

/// A token file its group or others can read is named once at start.
#[test]
fn run_warns_about_a_readable_token_file() {
    use std::os::unix::fs::PermissionsExt;
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        let dir = util::tempdir();
        let token = dir.path().join("token");
        std::fs::write(&token, "secret\n").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode)).unwrap();
        let cfg = dir.path().join("s.toml");
        std::fs::write(
            &cfg,
            format!(
                "[service]\ningest = false\nkamailio = false\nprobe = false\nhealth_interval = \"1h\"\n\n[influxdb]\nurl = \"http://127.0.0.1:{}\"\nspool_dir = \"{}\"\ntoken_file = \"{}\"\n",
                util::free_tcp_port(),
                dir.path().join("spool").display(),
                token.display()
            ),
        )
        .unwrap();
        let mut run = Run::ready(dir.path(), &cfg, &[], &[]);
        std::thread::sleep(Duration::from_millis(200));
        run.stop();
        let log = run.log();
        let want = format!(
            "WARN InfluxDB token file is readable by group or others; chmod 600 it, or give it with LoadCredential=influx-token:FILE file={} mode=0644",
            token.display()
        );
        assert_eq!(log.matches(&want).count(), usize::from(warned), "{log}");
        assert_eq!(log.contains("token file is readable"), warned, "{log}");
    }
}
