//! Key combinations between the formats' key lists and the internal `ctrl+shift+t` form.

use clawdesk_desktop::KeyCombo;

/// The key names of an internal combination, in order (`ctrl++` gives `ctrl`, `plus`).
pub(crate) fn split(combo: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = combo.trim();
    while !rest.is_empty() {
        let (part, tail) = match rest.char_indices().skip(1).find(|&(_, c)| c == '+') {
            Some((i, _)) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let part = part.trim();
        out.push(if part == "+" {
            "plus".into()
        } else {
            part.into()
        });
        rest = tail;
    }
    out
}

/// The internal combination for a list of key names, checked against the keys the desktop
/// layer can press.
pub(crate) fn join<S: AsRef<str>>(keys: &[S]) -> Result<String, String> {
    if keys.is_empty() {
        return Err("no keys given".into());
    }
    let mut names = Vec::with_capacity(keys.len());
    for key in keys {
        let key = key.as_ref().trim();
        if key.is_empty() {
            return Err("an empty key name".into());
        }
        names.push(if key == "+" { "plus" } else { key });
    }
    let combo = names.join("+");
    KeyCombo::parse(&combo).map_err(|e| e.to_string())?;
    Ok(combo)
}

#[cfg(test)]
mod tests {
    use super::{join, split};

    #[test]
    fn combos_split_and_join() {
        assert_eq!(split("ctrl+shift+t"), ["ctrl", "shift", "t"]);
        assert_eq!(split("ctrl++"), ["ctrl", "plus"]);
        assert_eq!(join(&["ctrl", "c"]).as_deref(), Ok("ctrl+c"));
        assert_eq!(join(&["ctrl", "+"]).as_deref(), Ok("ctrl+plus"));
        assert!(join(&["ctrl", "nosuchkey"]).is_err());
        assert!(join::<&str>(&[]).is_err());
    }
}
