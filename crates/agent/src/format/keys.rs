//! Key combinations between the formats' key lists and the internal `ctrl+shift+t` form.

use clawdesk_desktop::KeyCombo;
use clawdesk_desktop::act::action::{KeyName, NamedKey};

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

/// The key names of an internal combination as pyautogui names them (`arrowleft` is `left`,
/// `return` is `enter`): pyautogui ignores a name it does not know, so writing ours through
/// would press nothing.
pub(crate) fn pyautogui_names(combo: &str) -> Vec<String> {
    let Ok(parsed) = KeyCombo::parse(combo) else {
        return split(combo);
    };
    parsed
        .keys
        .iter()
        .map(|key| match key {
            KeyName::Char(c) => c.to_string(),
            KeyName::Named(named) => match named {
                NamedKey::Control => "ctrl".into(),
                NamedKey::Shift => "shift".into(),
                NamedKey::Alt => "alt".into(),
                NamedKey::Super => "win".into(),
                NamedKey::Return => "enter".into(),
                NamedKey::Tab => "tab".into(),
                NamedKey::Escape => "esc".into(),
                NamedKey::Backspace => "backspace".into(),
                NamedKey::Delete => "delete".into(),
                NamedKey::Insert => "insert".into(),
                NamedKey::Space => "space".into(),
                NamedKey::Up => "up".into(),
                NamedKey::Down => "down".into(),
                NamedKey::Left => "left".into(),
                NamedKey::Right => "right".into(),
                NamedKey::Home => "home".into(),
                NamedKey::End => "end".into(),
                NamedKey::PageUp => "pageup".into(),
                NamedKey::PageDown => "pagedown".into(),
                NamedKey::CapsLock => "capslock".into(),
                NamedKey::Menu => "apps".into(),
                NamedKey::Pause => "pause".into(),
                NamedKey::PrintScreen => "printscreen".into(),
                NamedKey::F(n) => format!("f{n}"),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{join, pyautogui_names, split};

    #[test]
    fn pyautogui_gets_its_own_key_names() {
        assert_eq!(pyautogui_names("arrowleft"), ["left"]);
        assert_eq!(pyautogui_names("ctrl+Return"), ["ctrl", "enter"]);
        assert_eq!(pyautogui_names("super+escape"), ["win", "esc"]);
        assert_eq!(pyautogui_names("ctrl+plus"), ["ctrl", "+"]);
        assert_eq!(pyautogui_names("shift+F5"), ["shift", "f5"]);
    }

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
