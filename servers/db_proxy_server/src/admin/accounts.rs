//! Users and departments (FLOWS.md 22): add (one or a CSV's worth), list, edit (a password is
//! re-hashed with the user's existing salt; disabling is status 3), and departments. Every
//! change bumps `updated`, so the clients' incremental syncs pick it up.

use im_proto::admin::{
    AdminDept, AdminResult, AdminUser, ImAdminDeptAddReq, ImAdminDeptAddRsp, ImAdminDeptListReq,
    ImAdminDeptListRsp, ImAdminUserAddReq, ImAdminUserAddRsp, ImAdminUserEditReq,
    ImAdminUserEditRsp, ImAdminUserListReq, ImAdminUserListRsp,
};
use im_storage::config::PasswordHashing;
use im_storage::{NewUser, Store, User, UserPatch, password};

use super::storage_result;
use crate::server::Shared;

/// Most users created by one request; imctl sends a long CSV in chunks of this size, so one
/// request stays one short transaction burst and one small reply.
pub const MAX_USERS_PER_ADD: usize = 1000;

/// Page size of a user list when the request gives none.
const DEFAULT_PAGE: u32 = 100;

/// Largest user list page (about 300 bytes a user: far below any frame cap).
const MAX_PAGE: u32 = 1000;

/// Longest name, nick, domain, phone or e-mail (the columns are varchar(32..64); the longer
/// of them, so that no valid value is refused here).
const MAX_TEXT_CHARS: usize = 64;

/// Longest avatar URL (varchar(255)).
const MAX_URL_CHARS: usize = 255;

/// Highest `IMUser.status` (0 active, 1 probation, 2 regular, 3 left/disabled, 4 intern).
const MAX_STATUS: u32 = 4;

/// Highest `IMUser.sex` (0 unknown, 1 male, 2 female).
const MAX_SEX: u32 = 2;

/// A user as administrators see it.
pub fn admin_user(u: &User) -> AdminUser {
    AdminUser {
        user_id: Some(u.id),
        name: Some(u.name.clone()),
        nick: Some(u.nick.clone()),
        sex: Some(u32::from(u.sex)),
        domain: Some(u.domain.clone()),
        phone: Some(u.phone.clone()),
        email: Some(u.email.clone()),
        avatar: Some(u.avatar.clone()),
        depart_id: Some(u.depart_id),
        status: Some(u32::from(u.status)),
        sign_info: Some(u.sign_info.clone()),
        created: Some(u.created),
        updated: Some(u.updated),
    }
}

/// Checks the length of a text field; names it in the error.
fn check_text(field: &str, value: Option<&str>, max: usize) -> Result<(), String> {
    match value {
        Some(v) if v.chars().count() > max => Err(format!(
            "{field} is {} characters long; at most {max}",
            v.chars().count()
        )),
        _ => Ok(()),
    }
}

/// Checks a small enumerated number; names it and the valid range in the error.
fn check_range(field: &str, value: Option<u32>, max: u32) -> Result<u8, String> {
    match value.unwrap_or(0) {
        v if v <= max => Ok(v as u8),
        v => Err(format!("{field} {v} is out of range 0..={max}")),
    }
}

fn new_user(spec: &im_proto::admin::NewUserSpec) -> Result<NewUser, String> {
    let name = spec.name.clone().unwrap_or_default();
    if name.trim().is_empty() {
        return Err("name is empty".into());
    }
    let pw = spec.password.clone().unwrap_or_default();
    if pw.is_empty() {
        return Err("password is empty".into());
    }
    check_text("name", Some(&name), MAX_TEXT_CHARS)?;
    for (field, v) in [
        ("nick", &spec.nick),
        ("domain", &spec.domain),
        ("phone", &spec.phone),
        ("email", &spec.email),
    ] {
        check_text(field, v.as_deref(), MAX_TEXT_CHARS)?;
    }
    check_text("avatar", spec.avatar.as_deref(), MAX_URL_CHARS)?;
    Ok(NewUser {
        nick: spec.nick.clone().unwrap_or_else(|| name.clone()),
        name,
        password: pw,
        sex: check_range("sex", spec.sex, MAX_SEX)?,
        domain: spec.domain.clone().unwrap_or_default(),
        phone: spec.phone.clone().unwrap_or_default(),
        email: spec.email.clone().unwrap_or_default(),
        avatar: spec.avatar.clone().unwrap_or_default(),
        depart_id: spec.depart_id.unwrap_or(0),
        status: check_range("status", spec.status, MAX_STATUS)?,
    })
}

/// IMAdminUserAddReq: creates each user in order; one failure (a taken name, a bad field)
/// does not stop the others, and is reported in its slot.
pub async fn user_add<S: Store>(store: &S, req: ImAdminUserAddReq) -> ImAdminUserAddRsp {
    if req.users.is_empty() || req.users.len() > MAX_USERS_PER_ADD {
        return ImAdminUserAddRsp {
            result_code: Some(AdminResult::AdminBadRequest as i32),
            result_string: Some(format!(
                "{} users in one request; send 1 to {MAX_USERS_PER_ADD}",
                req.users.len()
            )),
            ..Default::default()
        };
    }
    let mut ids = Vec::with_capacity(req.users.len());
    let mut errors = Vec::with_capacity(req.users.len());
    for spec in &req.users {
        let outcome = match new_user(spec) {
            Ok(u) => store.add_user(u).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(id) => {
                ids.push(id);
                errors.push(String::new());
            }
            Err(e) => {
                ids.push(0);
                errors.push(e);
            }
        }
    }
    let failed = errors.iter().filter(|e| !e.is_empty()).count();
    tracing::info!(created = ids.len() - failed, failed, "admin: users added");
    ImAdminUserAddRsp {
        result_code: Some(if failed == 0 {
            AdminResult::AdminOk
        } else {
            AdminResult::AdminFailed
        } as i32),
        result_string: (failed > 0).then(|| format!("{failed} of {} not created", ids.len())),
        user_ids: ids,
        errors,
    }
}

/// IMAdminUserListReq: a page by id; with `name`, the user who logs in with that name (the
/// active one when several rows share it, else the lowest id), as name lookups want.
pub async fn user_list<S: Store>(store: &S, req: ImAdminUserListReq) -> ImAdminUserListRsp {
    let failed = |e: im_storage::StorageError| ImAdminUserListRsp {
        result_code: Some(storage_result(&e) as i32),
        ..Default::default()
    };
    if let Some(name) = req.name.as_deref().filter(|n| !n.is_empty()) {
        let users = match store.credentials(name).await {
            Ok(Some(c)) => vec![c.user],
            Ok(None) => Vec::new(),
            Err(e) => return failed(e),
        };
        return ImAdminUserListRsp {
            result_code: Some(AdminResult::AdminOk as i32),
            users: users.iter().map(admin_user).collect(),
            next_after_user_id: Some(0),
        };
    }
    let limit = match req.limit.unwrap_or(0) {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    match store
        .list_users(req.after_user_id.unwrap_or(0), limit)
        .await
    {
        Ok(users) => ImAdminUserListRsp {
            result_code: Some(AdminResult::AdminOk as i32),
            next_after_user_id: Some(if users.len() as u32 == limit {
                users.last().map_or(0, |u| u.id)
            } else {
                0
            }),
            users: users.iter().map(admin_user).collect(),
        },
        Err(e) => failed(e),
    }
}

fn user_patch(req: &ImAdminUserEditReq) -> Result<UserPatch, String> {
    for (field, v) in [
        ("nick", &req.nick),
        ("domain", &req.domain),
        ("phone", &req.phone),
        ("email", &req.email),
    ] {
        check_text(field, v.as_deref(), MAX_TEXT_CHARS)?;
    }
    check_text("avatar", req.avatar.as_deref(), MAX_URL_CHARS)?;
    if req.password.as_deref() == Some("") {
        return Err("password is empty".into());
    }
    Ok(UserPatch {
        nick: req.nick.clone(),
        sex: req
            .sex
            .map(|s| check_range("sex", Some(s), MAX_SEX))
            .transpose()?,
        domain: req.domain.clone(),
        phone: req.phone.clone(),
        email: req.email.clone(),
        avatar: req.avatar.clone(),
        depart_id: req.depart_id,
        status: req
            .status
            .map(|s| check_range("status", Some(s), MAX_STATUS))
            .transpose()?,
        password: req.password.clone(),
    })
}

fn edit_refused(code: AdminResult, why: String) -> ImAdminUserEditRsp {
    ImAdminUserEditRsp {
        result_code: Some(code as i32),
        result_string: Some(why),
    }
}

/// IMAdminUserEditReq: applies the set fields and bumps `updated`. With argon2id hardening
/// on, a new password also replaces the user's argon2id row, or the old password would still
/// be the one that logs in.
pub async fn user_edit<S: Store>(sh: &Shared<S>, req: ImAdminUserEditReq) -> ImAdminUserEditRsp {
    let user = req.user_id.unwrap_or(0);
    if user == 0 {
        return edit_refused(AdminResult::AdminBadRequest, "user_id is required".into());
    }
    let patch = match user_patch(&req) {
        Ok(p) => p,
        Err(why) => return edit_refused(AdminResult::AdminBadRequest, why),
    };
    let new_password = patch.password.clone();
    match sh.store.update_user(user, patch).await {
        Ok(true) => {}
        Ok(false) => {
            return edit_refused(AdminResult::AdminNotFound, format!("no user {user}"));
        }
        Err(e) => return edit_refused(storage_result(&e), e.to_string()),
    }
    if let (PasswordHashing::Argon2id, Some(plain)) = (sh.password_hash, new_password) {
        let digest = password::md5_hex(&plain);
        // argon2 costs tens of milliseconds of CPU: not on the async threads.
        let phc = tokio::task::spawn_blocking(move || password::argon2_hash(&digest)).await;
        let stored = match phc {
            Ok(Ok(phc)) => sh
                .store
                .set_argon2(user, &phc)
                .await
                .map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = stored {
            return edit_refused(
                AdminResult::AdminFailed,
                format!("password stored in the legacy column only: {e}"),
            );
        }
    }
    tracing::info!(
        user_id = user,
        status = req.status,
        password_changed = req.password.is_some(),
        "admin: user edited"
    );
    ImAdminUserEditRsp {
        result_code: Some(AdminResult::AdminOk as i32),
        result_string: None,
    }
}

/// IMAdminDeptAddReq.
pub async fn dept_add<S: Store>(store: &S, req: ImAdminDeptAddReq) -> ImAdminDeptAddRsp {
    let name = req.name.unwrap_or_default();
    if let Err(why) = check_text("name", Some(&name), MAX_TEXT_CHARS) {
        return ImAdminDeptAddRsp {
            result_code: Some(AdminResult::AdminBadRequest as i32),
            result_string: Some(why),
            dept_id: None,
        };
    }
    match store
        .add_department(&name, req.parent_id.unwrap_or(0), req.priority.unwrap_or(0))
        .await
    {
        Ok(id) => ImAdminDeptAddRsp {
            result_code: Some(AdminResult::AdminOk as i32),
            result_string: None,
            dept_id: Some(id),
        },
        Err(e) => ImAdminDeptAddRsp {
            result_code: Some(storage_result(&e) as i32),
            result_string: Some(e.to_string()),
            dept_id: None,
        },
    }
}

/// IMAdminDeptListReq: every department, by id.
pub async fn dept_list<S: Store>(store: &S, _req: ImAdminDeptListReq) -> ImAdminDeptListRsp {
    match store.list_departments().await {
        Ok(depts) => ImAdminDeptListRsp {
            result_code: Some(AdminResult::AdminOk as i32),
            depts: depts
                .iter()
                .map(|d| AdminDept {
                    dept_id: Some(d.id),
                    name: Some(d.name.clone()),
                    parent_id: Some(d.parent_id),
                    priority: Some(d.priority),
                    status: Some(u32::from(d.status)),
                    updated: Some(d.updated),
                })
                .collect(),
        },
        Err(e) => ImAdminDeptListRsp {
            result_code: Some(storage_result(&e) as i32),
            depts: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_proto::admin::NewUserSpec;

    #[test]
    fn specs_are_checked_and_defaulted() {
        let spec = NewUserSpec {
            name: Some("amy".into()),
            password: Some("pw".into()),
            ..Default::default()
        };
        let u = new_user(&spec).unwrap_or_default();
        assert_eq!(
            (u.name.as_str(), u.nick.as_str(), u.status),
            ("amy", "amy", 0)
        );
        let bad = NewUserSpec {
            status: Some(9),
            ..spec.clone()
        };
        let e = new_user(&bad).expect_err("status 9");
        assert!(e.contains("status 9") && e.contains("0..=4"), "{e}");
        let no_pw = NewUserSpec {
            password: None,
            ..spec
        };
        assert!(new_user(&no_pw).is_err());
        let edit = ImAdminUserEditReq {
            user_id: Some(1),
            sex: Some(3),
            ..Default::default()
        };
        assert!(user_patch(&edit).is_err());
    }
}
