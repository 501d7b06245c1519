//! The test CP itself behaves as the other tests assume: checked with sipsak and kamcmd, both
//! independent of srewatch.

use crate::util::{self, kamailio::Kamailio, sipsak_status};

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
