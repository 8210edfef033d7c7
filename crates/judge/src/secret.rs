//! The endpoint's API key: read from the environment or the OS keyring when needed, kept in
//! memory only, never written to the database or a log.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{JudgeError, Result};

/// Where the API key is (the settings store this, never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum ApiKey {
    /// The endpoint needs no key (a local vLLM, SGLang or Ollama).
    #[default]
    None,
    /// An environment variable, e.g. `OPENAI_API_KEY`.
    Env {
        /// The variable's name.
        var: String,
    },
    /// The Secret Service keyring (GNOME Keyring, KWallet), the item with these attributes;
    /// store one with `secret-tool store --label 'ClawDesk judge' service clawdesk account NAME`.
    Keyring {
        /// The item's `service` attribute.
        service: String,
        /// The item's `account` attribute.
        account: String,
    },
}

/// A key in memory. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key so that it is never shown.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The key itself, for the one header that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl ApiKey {
    /// Looks the key up now.
    pub async fn resolve(&self) -> Result<Option<Secret>> {
        match self {
            ApiKey::None => Ok(None),
            ApiKey::Env { var } => match std::env::var(var) {
                Ok(value) if !value.trim().is_empty() => Ok(Some(Secret(value.trim().to_owned()))),
                Ok(_) => Err(JudgeError::Secret(format!("${var} is empty"))),
                Err(std::env::VarError::NotPresent) => {
                    Err(JudgeError::Secret(format!("${var} is not set")))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(JudgeError::Secret(format!("${var} is not valid UTF-8")))
                }
            },
            ApiKey::Keyring { service, account } => keyring(service, account).await.map(Some),
        }
    }
}

async fn keyring(service: &str, account: &str) -> Result<Secret> {
    use secret_service::{EncryptionType, SecretService};
    let fail = |what: &str, e: secret_service::Error| {
        JudgeError::Secret(format!(
            "keyring item service={service} account={account}: {what}: {e}"
        ))
    };
    // Diffie-Hellman: the key does not cross the session bus in clear text.
    let ss = SecretService::connect(EncryptionType::Dh)
        .await
        .map_err(|e| fail("no Secret Service on the session bus", e))?;
    let attributes = HashMap::from([("service", service), ("account", account)]);
    let found = ss
        .search_items(attributes)
        .await
        .map_err(|e| fail("search failed", e))?;
    let item = match (found.unlocked.first(), found.locked.first()) {
        (Some(item), _) => item,
        (None, Some(item)) => {
            item.unlock().await.map_err(|e| fail("cannot unlock", e))?;
            item
        }
        (None, None) => {
            return Err(JudgeError::Secret(format!(
                "no keyring item with service={service} account={account}; store one with \
                 `secret-tool store --label 'ClawDesk judge' service {service} account {account}`"
            )));
        }
    };
    let bytes = item
        .get_secret()
        .await
        .map_err(|e| fail("cannot read", e))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| JudgeError::Secret("the keyring item is not UTF-8 text".into()))?;
    Ok(Secret(text.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new("sk-very-secret");
        assert!(!format!("{s:?} {s}").contains("very"));
        assert_eq!(s.expose(), "sk-very-secret");
    }

    #[tokio::test]
    async fn env_keys_are_read_and_missing_ones_named() {
        let var = "CLAWDESK_TEST_JUDGE_KEY_7731";
        let key = ApiKey::Env { var: var.into() };
        let err = key.resolve().await.unwrap_err();
        assert!(err.to_string().contains(var), "{err}");
        // SAFETY: this test alone uses this variable name.
        unsafe { std::env::set_var(var, " sk-123 \n") };
        assert_eq!(key.resolve().await.unwrap().unwrap().expose(), "sk-123");
        assert_eq!(ApiKey::None.resolve().await.unwrap(), None);
    }
}
