//! How names, rooms and nodes become key-value keys and subject tokens.
//!
//! Names and rooms use letters, digits, '_', '.' and '-' (see `protocol::check_name`);
//! in a subject a '.' separates tokens, so one name would become several. A token is
//! the name folded to lower case (names are unique without regard to case) with each
//! '.' written `=2e`: '=' is allowed in keys and subjects but never in a name, so two
//! names never share a token, and the token reads back to the folded name.

use super::ClusterError;

/// The token of user `name`: its inbox subject's last token and its key in the name and
/// account buckets.
pub fn name_token(name: &str) -> String {
    fold(name)
}

/// The token of room `room`: its history subject's last token and its key in the rooms
/// bucket.
pub fn room_token(room: &str) -> String {
    fold(room)
}

fn fold(value: &str) -> String {
    let mut token = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '.' => token.push_str("=2e"),
            c => token.push(c.to_ascii_lowercase()),
        }
    }
    token
}

/// Checks a node's name, which becomes a subject token and a key: so no '.', '*', '>'
/// or spaces, and short enough to keep subjects short.
pub fn check_node(node: &str) -> Result<(), ClusterError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
    if node.is_empty() || node.len() > 64 || !node.chars().all(allowed) {
        return Err(ClusterError::BadNode(node.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_fold_case_and_escape_dots() {
        assert_eq!(name_token("Alice"), "alice");
        assert_eq!(name_token("a.b"), "a=2eb");
        assert_ne!(name_token("a.b"), name_token("a-b"));
        assert_ne!(name_token("a.b"), name_token("a2eb"));
        assert_eq!(room_token("Lab.1"), "lab=2e1");
    }

    #[test]
    fn node_names_are_single_tokens() {
        assert!(check_node("node-1").is_ok());
        for bad in ["", "a.b", "a b", "a*", ">", &"x".repeat(65)] {
            assert!(check_node(bad).is_err(), "{bad:?}");
        }
    }
}
