//! The CRM record a conversation is linked to (a contact or a lead), and how it is kept in the
//! conversation's memory between events: `entity_type` (`contact` or `lead`) and `entity_id`.

/// The memory key of the linked record's type.
pub const TYPE_KEY: &str = "entity_type";
/// The memory key of the linked record's id.
pub const ID_KEY: &str = "entity_id";

/// Which kind of CRM record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A contact (preferred when the customer is one).
    Contact,
    /// A lead.
    Lead,
}

impl Kind {
    /// The name Bitrix24's timeline (`ENTITY_TYPE`) and the memory use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Contact => "contact",
            Kind::Lead => "lead",
        }
    }

    /// The method that updates a record of this kind.
    pub fn update_method(self) -> &'static str {
        match self {
            Kind::Contact => "crm.contact.update",
            Kind::Lead => "crm.lead.update",
        }
    }
}

/// A contact or lead of the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entity {
    /// Contact or lead.
    pub kind: Kind,
    /// Its id in the portal.
    pub id: u64,
}

impl Entity {
    /// The record `memory` links to, if any (a malformed entry counts as none).
    pub fn recall(memory: &[(String, String)]) -> Option<Entity> {
        let get = |key: &str| {
            memory
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let kind = match get(TYPE_KEY)? {
            "contact" => Kind::Contact,
            "lead" => Kind::Lead,
            _ => return None,
        };
        let id = get(ID_KEY)?.parse().ok().filter(|id| *id > 0)?;
        Some(Entity { kind, id })
    }

    /// `memory` linked to this record: the other entries kept, ours replaced.
    pub fn remember(self, mut memory: Vec<(String, String)>) -> Vec<(String, String)> {
        memory.retain(|(k, _)| k != TYPE_KEY && k != ID_KEY);
        memory.push((TYPE_KEY.to_string(), self.kind.name().to_string()));
        memory.push((ID_KEY.to_string(), self.id.to_string()));
        memory
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing::pairs;

    #[test]
    fn kept_and_read_back() {
        let lead = Entity {
            kind: Kind::Lead,
            id: 7,
        };
        let memory = lead.remember(pairs(&[("other", "x"), ("entity_id", "1")]));
        assert_eq!(
            memory,
            pairs(&[("other", "x"), ("entity_type", "lead"), ("entity_id", "7")])
        );
        assert_eq!(Entity::recall(&memory), Some(lead));
        let contact = Entity::recall(&pairs(&[("entity_type", "contact"), ("entity_id", "5")]));
        assert_eq!(contact.map(|e| (e.kind, e.id)), Some((Kind::Contact, 5)));
        assert_eq!(Entity::recall(&[]), None);
        assert_eq!(
            Entity::recall(&pairs(&[("entity_type", "deal"), ("entity_id", "5")])),
            None
        );
        assert_eq!(
            Entity::recall(&pairs(&[("entity_type", "lead"), ("entity_id", "0")])),
            None
        );
    }
}
