//! `versions PATH`: a file that changes, stays, changes back and goes away
//! shows as its distinct versions, each with the snapshots that hold it.

mod common;
use common::*;

#[test]
fn versions_of_a_path_are_collapsed_by_content() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let f = src.join("notes.txt");
    let steps: [(&str, Option<&[u8]>); 5] = [
        ("2025-01-01T00:00:00Z", Some(b"first")),
        ("2025-01-02T00:00:00Z", Some(b"second, longer")),
        ("2025-01-03T00:00:00Z", Some(b"second, longer")),
        ("2025-01-04T00:00:00Z", Some(b"first")),
        ("2025-01-05T00:00:00Z", None),
    ];
    for (time, content) in steps {
        match content {
            Some(c) => std::fs::write(&f, c).unwrap(),
            None => std::fs::remove_file(&f).unwrap(),
        }
        env.ok(&[&"backup", &"--time", &time, &src]);
    }
    let out = env.ok(&[&"versions", &"--json", &f]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let v = v.as_array().unwrap();
    assert_eq!(v.len(), 2, "{out}");
    let times = |i: usize| -> Vec<String> {
        v[i]["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["time"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(times(0), ["2025-01-01T00:00:00Z", "2025-01-04T00:00:00Z"]);
    assert_eq!(times(1), ["2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z"]);
    assert_eq!(v[0]["size"], 5);
    assert_eq!(v[1]["size"], 14);
    assert_ne!(v[0]["content"], v[1]["content"]);
    // Each version comes back from the snapshot it names.
    let id = v[1]["snapshots"][0]["id"].as_str().unwrap();
    let spec = format!("{id}:{}", f.display());
    assert_eq!(env.ok(&[&"cat", &spec]), "second, longer");
    let text = env.ok(&[&"versions", &f]);
    assert_eq!(text.lines().count(), 3, "{text}");
    // A path no snapshot has is an error that says so.
    let o = env.run(&[&"versions", &src.join("nope")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in none of the 5 snapshot(s)"));
}
