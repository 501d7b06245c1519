//! The test CP itself behaves as the other tests assume: checked with sipsak and kamcmd, both
//! independent of srewatch.

use crate::util::{self, kamailio::Kamailio};
use std::process::Command;

fn sipsak_status(uri: &str) -> String {
    let out = Command::new("sipsak")
        .args(["-vv", "-s", uri])
        .output()
        .expect("sipsak (Debian package sipsak)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.starts_with("SIP/2.0 "))
        .map(|l| l[8..11].to_string())
        .unwrap_or_else(|| panic!("sipsak printed no status line:\n{text}"))
}

#[test]
fn test_cp_answers_200_then_503_with_marker() {
    let dir = util::tempdir();
    let mut k = Kamailio::start(dir.path(), Default::default());
    assert_eq!(sipsak_status(&k.sip_uri()), "200");
    k.set_out_of_service(true);
    assert_eq!(sipsak_status(&k.sip_uri()), "503");
    k.set_out_of_service(false);
    assert_eq!(sipsak_status(&k.sip_uri()), "200");
    assert_eq!(k.kamcmd_stat("core:rcv_requests_options"), 3);
    assert_eq!(k.kamcmd_stat("sl:200_replies"), 2);
    assert_eq!(k.kamcmd_stat("sl:5xx_replies"), 1);
    k.restart();
    assert_eq!(k.kamcmd_stat("core:rcv_requests_options"), 0);
    assert_eq!(sipsak_status(&k.sip_uri()), "200");
}
