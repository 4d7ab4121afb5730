//! Generated artifacts checked in: man pages (man/) and `--help` texts (fixtures/help/).
//! Each test regenerates them and fails on drift; `IM_BLESS=1` rewrites the files instead.
//!
//! To add a binary's man page, add a row to [`MAN_PAGES`] (its crate's library exposes the
//! clap `Cli`; add the crate to imctl's dev-dependencies) and run
//! `IM_BLESS=1 cargo test -p imctl --test cli generated`.

use std::collections::BTreeMap;
use std::path::Path;

use clap::CommandFactory;

use crate::common::{IMCTL, repo_root, text};

/// One binary's man pages: its clap command and the man section.
struct ManPage {
    command: fn() -> clap::Command,
    section: &'static str,
}

/// Every binary with a man page. imctl gets one page per subcommand too (imctl-user.1,
/// imctl-user-add.1...); the servers have no subcommands.
const MAN_PAGES: &[ManPage] = &[
    ManPage {
        command: imctl::cli::Cli::command,
        section: "1",
    },
    ManPage {
        command: login_server::Cli::command,
        section: "8",
    },
    ManPage {
        command: msg_server::cli::Cli::command,
        section: "8",
    },
    ManPage {
        command: route_server::cli::Cli::command,
        section: "8",
    },
    ManPage {
        command: db_proxy_server::Cli::command,
        section: "8",
    },
    ManPage {
        command: file_server::cli::Cli::command,
        section: "8",
    },
    ManPage {
        command: push_server::cli::Cli::command,
        section: "8",
    },
    ManPage {
        command: msfs::Cli::command,
        section: "8",
    },
    ManPage {
        command: http_msg_server::Cli::command,
        section: "8",
    },
];

fn bless() -> bool {
    std::env::var("IM_BLESS").is_ok_and(|v| v == "1")
}

/// Compares `generated` (file name -> text) with the files of `dir` whose names pass `ours`;
/// rewrites them when blessing.
fn check_dir(dir: &Path, generated: &BTreeMap<String, String>, ours: impl Fn(&str) -> bool) {
    if bless() {
        std::fs::create_dir_all(dir).unwrap();
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if ours(&name) && !generated.contains_key(&name) {
                std::fs::remove_file(dir.join(&name)).unwrap();
            }
        }
        for (name, body) in generated {
            std::fs::write(dir.join(name), body).unwrap();
        }
        return;
    }
    let mut drift = Vec::new();
    for (name, body) in generated {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(old) if &old == body => {}
            Ok(_) => drift.push(format!("{name}: differs")),
            Err(_) => drift.push(format!("{name}: missing")),
        }
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if ours(&name) && !generated.contains_key(&name) {
            drift.push(format!("{name}: no longer generated"));
        }
    }
    assert!(
        drift.is_empty(),
        "{} is out of date:\n  {}\nregenerate with: IM_BLESS=1 cargo test -p imctl --test cli generated",
        dir.display(),
        drift.join("\n  ")
    );
}

/// Renders `cmd` and, recursively, its visible subcommands (as clap_mangen::generate_to
/// does, but in memory).
fn render(cmd: clap::Command, section: &str, out: &mut BTreeMap<String, String>) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        render(sub, section, out);
    }
    let man = clap_mangen::Man::new(cmd).section(section);
    let mut buf = Vec::new();
    man.render(&mut buf).unwrap();
    out.insert(man.get_filename(), String::from_utf8(buf).unwrap());
}

#[test]
fn man_pages_match_the_clap_definitions() {
    let mut pages = BTreeMap::new();
    for p in MAN_PAGES {
        let mut cmd = (p.command)().disable_help_subcommand(true);
        cmd.build();
        render(cmd, p.section, &mut pages);
    }
    check_dir(&repo_root().join("man"), &pages, |n| {
        n.ends_with(".1") || n.ends_with(".8")
    });
}

/// Every (sub)command path of imctl: [], ["user"], ["user", "add"], ...
fn command_paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    out.push(prefix.to_vec());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        let mut p = prefix.to_vec();
        p.push(sub.get_name().to_owned());
        command_paths(sub, &p, out);
    }
}

#[tokio::test]
async fn help_texts_match_the_snapshots() {
    let cmd = imctl::cli::Cli::command();
    let mut paths = Vec::new();
    command_paths(&cmd, &[], &mut paths);
    let mut texts = BTreeMap::new();
    for path in paths {
        let out = tokio::process::Command::new(IMCTL)
            .args(&path)
            .arg("--help")
            .env_remove("IMCTL_CONFIG")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "imctl {path:?} --help: {}",
            text(&out.stderr)
        );
        let name = std::iter::once("imctl".to_owned())
            .chain(path)
            .collect::<Vec<_>>()
            .join("-");
        texts.insert(format!("{name}.txt"), text(&out.stdout));
    }
    check_dir(&repo_root().join("fixtures/help"), &texts, |n| {
        n.starts_with("imctl") && n.ends_with(".txt")
    });
}
