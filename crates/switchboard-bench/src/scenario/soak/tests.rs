//! The soak's arguments, plan and verdicts, without a server.

use super::*;
use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: SoakArgs,
}

fn args(extra: &[&str]) -> SoakArgs {
    Cli::try_parse_from(std::iter::once("soak").chain(extra.iter().copied()))
        .unwrap()
        .args
}

#[test]
fn defaults_are_the_issue_s_soak() {
    let p = args(&[]).plan(false).unwrap();
    assert_eq!(p.duration, Duration::from_secs(600));
    assert_eq!(
        (p.idle, p.pairs, p.churners, p.slowloris),
        (15_000, 200, 20, 500)
    );
    // 20 % of 600 s.
    assert_eq!(p.warmup, Duration::from_secs(120));
    assert_eq!(p.messages_per_pair(), 60_000);
    let q = args(&[]).plan(true).unwrap();
    assert!(q.duration < Duration::from_secs(10));
    let e = args(&["--idle", "7", "--rate", "2.5"]).plan(true).unwrap();
    assert_eq!(e.idle, 7);
    assert_eq!(e.messages_per_pair(), 12);
}

#[test]
fn warmup_is_the_longer_of_fraction_and_minimum() {
    let s = Duration::from_secs;
    assert_eq!(warmup(s(600), 0.2, s(10)), s(120));
    assert_eq!(warmup(s(30), 0.2, s(10)), s(10));
    assert_eq!(warmup(s(30), 0.5, s(10)), s(15));
    assert_eq!(warmup(s(5), 0.2, s(10)), s(5));
}

#[test]
fn bad_sizes_are_refused() {
    assert!(args(&["--rate", "0"]).plan(false).is_err());
    assert!(args(&["--warmup-fraction", "1"]).plan(false).is_err());
    assert!(args(&["--duration=-1"]).plan(false).is_err());
    assert!(args(&["--inflight", "0"]).plan(false).is_err());
    assert!(
        args(&["--rate", "100000", "--pairs", "10000"])
            .plan(false)
            .is_err()
    );
}

#[test]
fn the_duration_limit_must_leave_room() {
    let a = args(&["--duration", "600"]);
    let url = "ws://127.0.0.1:3001/";
    assert!(check(&a, false, url, Duration::from_secs(120)).is_err());
    check(&a, false, url, Duration::from_secs(700)).unwrap();
    check(&args(&[]), true, url, Duration::from_secs(120)).unwrap();
}

#[test]
fn slowloris_goes_to_loopback_only() {
    let url = "ws://127.0.0.1:3001/";
    assert_eq!(http_url(None, url).unwrap(), "ws://127.0.0.1:3001/");
    assert_eq!(
        http_url(None, "ws://[::1]:3001/x").unwrap(),
        "ws://[::1]:3001/"
    );
    assert_eq!(
        http_url(Some("127.0.0.1:3000"), url).unwrap(),
        "ws://127.0.0.1:3000/"
    );
    assert_eq!(
        http_url(Some("localhost:3000"), url).unwrap(),
        "ws://localhost:3000/"
    );
    for bad in [
        "10.0.0.1:3000",
        "example.com:80",
        "http://127.0.0.1:3000",
        "127.0.0.1:3000/x",
        "user@127.0.0.1:3000",
    ] {
        assert!(http_url(Some(bad), url).is_err(), "{bad}");
    }
}

#[test]
fn the_slowloris_request_never_ends() {
    let r = loris_request("127.0.0.1:3000".parse().unwrap());
    let text = String::from_utf8(r).unwrap();
    assert!(text.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"));
    assert!(text.ends_with("\r\n"));
    assert!(!text.contains("\r\n\r\n"), "{text}");
}

fn sample(at: u64, rss_kib: u64) -> Sample {
    Sample {
        at: Duration::from_secs(at),
        rss_kib,
        fds: 10,
    }
}

#[test]
fn flatness_ignores_the_warm_up() {
    let samples = [
        sample(0, 1000),
        sample(1, 5000),
        sample(2, 10_000),
        sample(3, 10_200),
        sample(4, 10_100),
    ];
    let f = Flatness::of(&samples, Duration::from_secs(2)).unwrap();
    assert_eq!((f.min_kib, f.max_kib, f.samples), (10_000, 10_200, 3));
    assert!((f.spread_pct() - 2.0).abs() < 1e-9);
    let all = Flatness::of(&samples, Duration::ZERO).unwrap();
    assert!((all.spread_pct() - 920.0).abs() < 1e-9);
    assert_eq!(Flatness::of(&samples, Duration::from_secs(4)), None);
    assert_eq!(
        samples_csv(&samples[..2]),
        "t_s,rss_kib,fds\n0.0,1000,10\n1.0,5000,10\n"
    );
}
