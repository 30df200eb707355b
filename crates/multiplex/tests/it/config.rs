//! Configuration errors, strategy names, and keys kept out of Debug and metrics.

use infermux_core::{ApiKey, ErrorKind};
use infermux_multiplex::{MemberSpec, MultiPool, PoolConfig, Strategy};

use crate::stub::{Stub, executor, keyed, ok};

fn execs(n: usize) -> Vec<std::sync::Arc<infermux_resilience::AttemptExecutor>> {
    (0..n)
        .map(|i| {
            executor(
                Stub::new(&format!("c{i}"), |_r, _c| async { ok() }),
                4,
                None,
            )
        })
        .collect()
}

#[test]
fn bad_pools_are_config_errors() {
    let cfg = || PoolConfig::new(Strategy::RoundRobin);
    let err = |e: infermux_core::Result<MultiPool>| e.unwrap_err().kind();
    assert_eq!(
        err(MultiPool::new(execs(1), vec![], cfg())),
        ErrorKind::Config
    );
    assert_eq!(
        err(MultiPool::new(execs(1), vec![MemberSpec::new(1)], cfg())),
        ErrorKind::Config
    );
    assert_eq!(
        err(MultiPool::new(
            execs(1),
            vec![MemberSpec::new(0).with_weight(0)],
            cfg()
        )),
        ErrorKind::Config
    );
    assert_eq!(
        err(MultiPool::new(
            execs(1),
            vec![MemberSpec::new(0).with_tpm(0)],
            cfg()
        )),
        ErrorKind::Config
    );
    assert_eq!(
        err(MultiPool::new(
            execs(1),
            (0..65).map(|_| MemberSpec::new(0)).collect(),
            cfg()
        )),
        ErrorKind::Config
    );
    // a key alias bound to two endpoints
    assert_eq!(
        err(MultiPool::new(
            execs(2),
            vec![keyed(0, "a"), keyed(1, "a")],
            cfg()
        )),
        ErrorKind::Config
    );
    // one key, two different limits
    assert_eq!(
        err(MultiPool::new(
            execs(1),
            vec![keyed(0, "a").with_rpm(5), keyed(0, "a").with_rpm(6)],
            cfg()
        )),
        ErrorKind::Config
    );
    assert_eq!(
        err(MultiPool::new(
            execs(1),
            vec![MemberSpec::new(0)],
            cfg().with_max_ejection_percent(101)
        )),
        ErrorKind::Config
    );
    assert_eq!(
        err(MultiPool::new(
            execs(1),
            vec![MemberSpec::new(0)],
            cfg().with_limit_burst_percent(100)
        )),
        ErrorKind::Config
    );
    // 64 members, and one key shared by two models, are fine
    assert!(
        MultiPool::new(
            execs(1),
            (0..64).map(|_| MemberSpec::new(0)).collect(),
            cfg()
        )
        .is_ok()
    );
    assert!(
        MultiPool::new(
            execs(1),
            vec![keyed(0, "a").with_model("x"), keyed(0, "a").with_model("y")],
            cfg()
        )
        .is_ok()
    );
}

#[test]
fn strategies_parse_from_their_names() {
    for s in Strategy::ALL {
        assert_eq!(s.as_str().parse::<Strategy>().unwrap(), s);
    }
    assert_eq!(Strategy::default(), Strategy::RoundRobin);
    assert_eq!(
        "random".parse::<Strategy>().unwrap_err().kind(),
        ErrorKind::Config
    );
}

#[test]
fn keys_appear_by_alias_only() {
    let members = vec![MemberSpec::new(0).with_key("team-a", ApiKey::new("sk-very-secret"))];
    let pool = MultiPool::new(execs(1), members.clone(), PoolConfig::default()).unwrap();
    let mut metrics = String::new();
    pool.render_prometheus("chat", &mut metrics);
    let shown = format!(
        "{metrics}{pool:?}{:?}{:?}{members:?}",
        pool.status(),
        pool.member(0)
    );
    assert!(shown.contains("team-a"));
    assert!(!shown.contains("sk-very-secret"), "{shown}");
    assert!(metrics.contains(
        "infermux_pool_member_picks_total{pool=\"chat\",endpoint=\"c0\",key=\"team-a\",model=\"\"} 0"
    ));
}
