//! Search over the conversations an agent can see: a case-insensitive match on the customer's
//! address, the contact's name (from the provider or the directory) and the text of messages
//! and notes. It walks the agent's view most recently updated first, through the same indexes
//! as the lists, and reads a bounded amount per request: at most [`SCAN_CONVERSATIONS`]
//! conversations, [`SCAN_MESSAGES`] messages of each and [`SCAN_MESSAGES_TOTAL`] in all; the
//! cursor it answers resumes the walk where it stopped.

use crate::model::Conversation;
use crate::store::{ConversationCursor, ConversationQuery, Store, StoreError};

/// The most conversations one search request looks at.
pub const SCAN_CONVERSATIONS: usize = 500;

/// The most messages of one conversation a search reads (its first ones, in order).
pub const SCAN_MESSAGES: usize = 1_000;

/// The most messages one search request reads in all.
pub const SCAN_MESSAGES_TOTAL: usize = 20_000;

/// The longest match excerpt handed back, in characters.
const EXCERPT_CHARS: usize = 120;

/// One conversation that matched, and the text that matched (an excerpt).
pub struct Hit {
    /// The conversation.
    pub conversation: Conversation,
    /// What matched: the address, the name, or an excerpt of a message.
    pub matched: String,
}

/// A page of hits, and the cursor to continue from when the walk stopped before the end.
pub struct Hits {
    /// Matches, most recently updated first.
    pub hits: Vec<Hit>,
    /// Where to resume: `None` once every conversation of the view was looked at.
    pub next: Option<ConversationCursor>,
}

/// Searches `query`'s conversations (its selectors are the agent's view) for `needle`, up to
/// `query.limit` hits.
pub async fn search(
    store: &dyn Store,
    query: &ConversationQuery,
    needle: &str,
) -> Result<Hits, StoreError> {
    let needle = needle.trim().to_lowercase();
    let want = query.limit;
    let mut hits = Vec::new();
    let mut scanned = 0;
    let mut budget = SCAN_MESSAGES_TOTAL;
    let mut walk = query.clone();
    walk.limit = want.clamp(20, 100);
    loop {
        let page = store.conversations(&walk).await?;
        let more = page.next;
        for c in page.items {
            scanned += 1;
            let cursor = ConversationCursor::of(&c);
            if let Some(matched) = matches(store, &c, &needle, &mut budget).await? {
                hits.push(Hit {
                    conversation: c,
                    matched,
                });
            }
            if hits.len() == want || scanned == SCAN_CONVERSATIONS || budget == 0 {
                return Ok(Hits {
                    hits,
                    next: Some(cursor),
                });
            }
        }
        match more {
            Some(next) => walk.after = Some(next),
            None => return Ok(Hits { hits, next: None }),
        }
    }
}

/// What of `c` contains `needle` (lower case), if anything, reading at most `budget` of its
/// messages (and spending what it reads).
async fn matches(
    store: &dyn Store,
    c: &Conversation,
    needle: &str,
    budget: &mut usize,
) -> Result<Option<String>, StoreError> {
    let directory = store.contact(&c.customer).await?.map(|k| k.name);
    let name = directory.or_else(|| c.contact_name.clone());
    for fact in [Some(c.customer.clone()), name].into_iter().flatten() {
        if fact.to_lowercase().contains(needle) {
            return Ok(Some(fact));
        }
    }
    let mut after = None;
    let mut read = 0;
    while read < SCAN_MESSAGES && *budget > 0 {
        let take = (SCAN_MESSAGES - read).min(200).min(*budget);
        let page = store.messages(c.id, after, take).await?;
        read += page.items.len();
        *budget = budget.saturating_sub(page.items.len().max(1));
        for m in &page.items {
            if let Some(text) = &m.text
                && let Some(excerpt) = excerpt(text, needle)
            {
                return Ok(Some(excerpt));
            }
        }
        match page.next {
            Some(seq) if !page.items.is_empty() => after = Some(seq),
            _ => break,
        }
    }
    Ok(None)
}

/// The part of `text` around the first case-insensitive occurrence of `needle`.
fn excerpt(text: &str, needle: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let at = lower.find(needle)?;
    // Lower-casing can change lengths (`İ` becomes two characters): the excerpt's place is
    // then off by as many characters, never out of bounds.
    let before = lower[..at].chars().count();
    let start = before.saturating_sub(EXCERPT_CHARS / 3);
    let chars: Vec<char> = text.chars().collect();
    let end = (start + EXCERPT_CHARS).min(chars.len());
    let start = start.min(end);
    let mut out: String = chars[start..end].iter().collect();
    if start > 0 {
        out.insert(0, '…');
    }
    if end < chars.len() {
        out.push('…');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn excerpts_center_on_the_match_whatever_the_case() {
        assert_eq!(
            excerpt("Where is my ORDER?", "order").as_deref(),
            Some("Where is my ORDER?")
        );
        assert_eq!(excerpt("nothing here", "order"), None);
        let long = format!("{}needle{}", "a".repeat(200), "b".repeat(200));
        let e = excerpt(&long, "needle").unwrap();
        assert!(
            e.starts_with('…') && e.ends_with('…') && e.contains("needle"),
            "{e}"
        );
        assert!(e.chars().count() <= 122);
        // A character whose lower case is longer in bytes does not shift the excerpt.
        assert_eq!(
            excerpt("İstanbul order", "order").as_deref(),
            Some("İstanbul order")
        );
    }
}
