//! Tests of the local registry: membership, isolation, limits, memory given back.

use super::*;

#[tokio::test]
async fn membership_uids_and_removal() {
    let r = LocalRegistry::new();
    assert!(r.register_system("s", None).await.expect("register"));
    r.add_client("s", "a", Some("alice")).await.expect("add a");
    r.add_client("s", "b", None).await.expect("add b");
    let j = r
        .join_group("s", "a", "room", Member::default())
        .await
        .expect("join");
    assert!(j.new && j.others.is_empty());
    let j = r
        .join_group("s", "b", "room", Member::default())
        .await
        .expect("join");
    assert_eq!(j.others, vec!["a".to_owned()]);
    assert_eq!(
        r.group_uids("s", "room").await.expect("uids"),
        vec!["alice"]
    );
    r.bind_uid("s", "b", "bob").await.expect("bind");
    assert_eq!(r.uids("s").await.expect("uids"), vec!["alice", "bob"]);
    let left = r.remove_client("s", "a").await.expect("remove");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].others, vec!["b".to_owned()]);
    assert_eq!(r.uids("s").await.expect("uids"), vec!["bob"]);
    assert_eq!(
        r.leave_group("s", "a", "room").await.err(),
        Some(RegistryError::UnknownClient("a".into()))
    );
}

fn small() -> LocalRegistry {
    LocalRegistry::with_limits(LimitsConfig {
        max_groups_per_client: 2,
        max_groups_per_system: 3,
        max_info_entries: 2,
        max_info_bytes: 10,
        max_systems: 2,
        ..LimitsConfig::default()
    })
}

#[tokio::test]
async fn limits_hold_and_rejoining_is_free() {
    let r = small();
    r.register_system("s", None).await.expect("register");
    r.register_system("t", None).await.expect("register");
    assert_eq!(
        r.register_system("u", None).await,
        Err(RegistryError::TooManySystems { max: 2 })
    );
    assert_eq!(r.register_system("s", None).await, Ok(false));
    r.add_client("s", "a", None).await.expect("add");
    r.add_client("s", "b", None).await.expect("add");
    for g in ["g1", "g2"] {
        r.join_group("s", "a", g, Member::default())
            .await
            .expect("join");
    }
    r.join_group("s", "a", "g1", Member::default())
        .await
        .expect("rejoin");
    assert!(matches!(
        r.join_group("s", "a", "g3", Member::default()).await,
        Err(RegistryError::TooManyGroupsForClient { max: 2, .. })
    ));
    r.join_group("s", "b", "g3", Member::default())
        .await
        .expect("third group");
    assert!(matches!(
        r.join_group("s", "b", "g4", Member::default()).await,
        Err(RegistryError::TooManyGroups { max: 3, .. })
    ));
    // An existing group is not a new one.
    r.join_group("s", "b", "g1", Member::default())
        .await
        .expect("join existing");
    let info = |pairs: &[(&str, &str)]| -> Info {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    };
    r.set_info("s", "a", info(&[("k", "v"), ("l", "w")]))
        .await
        .expect("set");
    assert!(matches!(
        r.update_info("s", "a", info(&[("m", "x")])).await,
        Err(RegistryError::InfoTooManyEntries { len: 3, max: 2 })
    ));
    r.update_info("s", "a", info(&[("k", "vvvvv")]))
        .await
        .expect("replace");
    assert!(matches!(
        r.set_info("s", "a", info(&[("k", "0123456789")])).await,
        Err(RegistryError::InfoTooLarge { len: 11, max: 10 })
    ));
    assert_eq!(r.info("s", "a").await.expect("info").len(), 2);
}

#[tokio::test]
async fn removed_systems_free_their_slot_and_tables_shrink() {
    let r = small();
    r.register_system("s", None).await.expect("register");
    for i in 0..1000 {
        r.add_client("s", &format!("c{i}"), None)
            .await
            .expect("add");
    }
    for i in 0..999 {
        r.remove_client("s", &format!("c{i}"))
            .await
            .expect("remove");
    }
    let cap = r.system("s").expect("s").lock().clients.capacity();
    assert!(cap < 256, "client table kept capacity {cap}");
    assert_eq!(r.remove_system("s").await, Ok(vec!["c999".to_owned()]));
    assert!(!r.system_exists("s").await.expect("local registry answers"));
    r.register_system("t", None).await.expect("t");
    r.register_system("u", None).await.expect("slot freed");
}

#[tokio::test]
async fn systems_are_isolated_and_bounded() {
    let r = LocalRegistry::new();
    r.register_system("s1", Some(1)).await.expect("register");
    r.register_system("s2", None).await.expect("register");
    r.add_client("s1", "a", None).await.expect("add");
    assert!(
        !r.client_exists("s2", "a")
            .await
            .expect("local registry answers")
    );
    assert_eq!(
        r.add_client("s1", "b", None).await.err(),
        Some(RegistryError::SystemFull("s1".into()))
    );
    assert!(matches!(
        r.clients("nope").await,
        Err(RegistryError::UnknownSystem(_))
    ));
}
