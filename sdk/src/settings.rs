//! Reading a channel instance's settings.

/// A read-only view of a channel instance's settings (`types::Settings`).
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    list: &'a [(String, String)],
}

impl<'a> Settings<'a> {
    /// Wraps the settings list the host passed.
    pub fn new(list: &'a [(String, String)]) -> Self {
        Settings { list }
    }

    /// The value of setting `name`, or `None` when it is absent or empty. If a name repeats, the
    /// last value wins.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.list
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The value of setting `name`, or `default` when it is absent or empty.
    pub fn get_or(&self, name: &str, default: &'a str) -> &'a str {
        self.get(name).unwrap_or(default)
    }

    /// The value of required setting `name`.
    ///
    /// # Errors
    ///
    /// A message naming the setting when it is absent or empty, e.g.
    /// ``required setting `auth_token` is missing or empty``.
    pub fn require(&self, name: &str) -> Result<&'a str, String> {
        self.get(name)
            .ok_or_else(|| format!("required setting `{name}` is missing or empty"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_and_require() {
        let list = vec![
            ("a".to_string(), "1".to_string()),
            ("empty".to_string(), String::new()),
            ("a".to_string(), "2".to_string()),
        ];
        let s = Settings::new(&list);
        assert_eq!(s.get("a"), Some("2"));
        assert_eq!(s.get("empty"), None);
        assert_eq!(s.get_or("missing", "x"), "x");
        assert_eq!(s.require("a"), Ok("2"));
        let err = s.require("auth_token").unwrap_err();
        assert!(err.contains("`auth_token`"), "{err}");
    }
}
