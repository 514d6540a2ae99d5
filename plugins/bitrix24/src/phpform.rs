//! Form fields with PHP-style nested names, as Bitrix24 (a PHP application) posts them:
//! `auth[application_token]=...&data[FIELDS][ID]=7` means `auth → application_token` and
//! `data → FIELDS → ID`.

use plugboard_sdk::FormError;
use plugboard_sdk::form;

/// Form fields, each under its name's path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    fields: Vec<(Vec<String>, String)>,
}

impl Form {
    /// The fields of an `application/x-www-form-urlencoded` body or query string.
    ///
    /// # Errors
    ///
    /// A [`FormError`] for a malformed escape or invalid UTF-8.
    pub fn parse(encoded: &[u8]) -> Result<Form, FormError> {
        let fields = form::parse(encoded)?
            .into_iter()
            .map(|(name, value)| (path(&name), value))
            .collect();
        Ok(Form { fields })
    }

    /// The value at `path` (`["auth", "application_token"]`); the last one when it repeats, as
    /// PHP reads it.
    pub fn get(&self, path: &[&str]) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(p, _)| p.iter().map(String::as_str).eq(path.iter().copied()))
            .map(|(_, v)| v.as_str())
    }
}

/// The path of a PHP-style name: `a[b][c]` is `["a", "b", "c"]`, `a[]` is `["a", ""]`. A name
/// whose brackets do not pair up is one plain name; text after the last `]` is ignored, as PHP
/// does.
pub fn path(name: &str) -> Vec<String> {
    let Some(open) = name.find('[').filter(|&i| i > 0) else {
        return vec![name.to_string()];
    };
    let mut path = vec![name[..open].to_string()];
    let mut rest = &name[open..];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return vec![name.to_string()];
        };
        path.push(inner[..close].to_string());
        rest = &inner[close + 1..];
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_names_become_paths() {
        assert_eq!(path("to"), ["to"]);
        assert_eq!(path("data[to]"), ["data", "to"]);
        assert_eq!(path("data[FIELDS][ID]"), ["data", "FIELDS", "ID"]);
        assert_eq!(path("document_id[]"), ["document_id", ""]);
        assert_eq!(path("a[b]junk"), ["a", "b"]);
        assert_eq!(path("a[b"), ["a[b"]);
        assert_eq!(path("[x]"), ["[x]"]);
    }

    #[test]
    fn nested_forms_are_read_by_path() {
        let body = b"event=ONCRMLEADUPDATE&data%5BFIELDS%5D%5BID%5D=662&auth[application_token]=t1\
                     &auth%5Bdomain%5D=example.bitrix24.com&data[to]=%2B14155550100&to=x&to=y";
        let form = Form::parse(body).unwrap();
        assert_eq!(form.get(&["event"]), Some("ONCRMLEADUPDATE"));
        assert_eq!(form.get(&["data", "FIELDS", "ID"]), Some("662"));
        assert_eq!(form.get(&["auth", "application_token"]), Some("t1"));
        assert_eq!(form.get(&["auth", "domain"]), Some("example.bitrix24.com"));
        assert_eq!(form.get(&["data", "to"]), Some("+14155550100"));
        assert_eq!(form.get(&["to"]), Some("y"));
        assert_eq!(form.get(&["data"]), None);
        assert_eq!(form.get(&["auth", "member_id"]), None);
        assert!(Form::parse(b"a=%zz").is_err());
    }
}
