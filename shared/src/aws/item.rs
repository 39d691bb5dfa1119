//! Reading and writing DynamoDB attribute maps, so every adapter maps items in
//! one way and reports a malformed item with the key and attribute at fault.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::StoreError;

/// A DynamoDB item as the SDK returns it.
pub type Item = HashMap<String, AttributeValue>;

/// The partition key attribute of every payhook table.
pub const PK: &str = "pk";

/// A string attribute value.
pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute value.
pub fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Typed access to an item's attributes; every failure names the item and the attribute.
pub trait ItemExt {
    /// A required string attribute.
    fn req_s(&self, key: &str, name: &str) -> Result<&str, StoreError>;
    /// An optional string attribute.
    fn opt_s(&self, key: &str, name: &str) -> Result<Option<&str>, StoreError>;
    /// A required integer attribute.
    fn req_i64(&self, key: &str, name: &str) -> Result<i64, StoreError>;
    /// An optional integer attribute.
    fn opt_i64(&self, key: &str, name: &str) -> Result<Option<i64>, StoreError>;
    /// An optional boolean attribute.
    fn opt_bool(&self, key: &str, name: &str) -> Result<Option<bool>, StoreError>;
}

impl ItemExt for Item {
    fn req_s(&self, key: &str, name: &str) -> Result<&str, StoreError> {
        self.opt_s(key, name)?
            .ok_or_else(|| StoreError::corrupt(key, format!("attribute `{name}` is missing")))
    }

    fn opt_s(&self, key: &str, name: &str) -> Result<Option<&str>, StoreError> {
        match self.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(other) => Err(wrong_type(key, name, "a string", other)),
        }
    }

    fn req_i64(&self, key: &str, name: &str) -> Result<i64, StoreError> {
        self.opt_i64(key, name)?
            .ok_or_else(|| StoreError::corrupt(key, format!("attribute `{name}` is missing")))
    }

    fn opt_i64(&self, key: &str, name: &str) -> Result<Option<i64>, StoreError> {
        match self.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| {
                StoreError::corrupt(key, format!("attribute `{name}` = {v:?} is not an integer"))
            }),
            Some(other) => Err(wrong_type(key, name, "a number", other)),
        }
    }

    fn opt_bool(&self, key: &str, name: &str) -> Result<Option<bool>, StoreError> {
        match self.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::Bool(v)) => Ok(Some(*v)),
            Some(other) => Err(wrong_type(key, name, "a boolean", other)),
        }
    }
}

fn wrong_type(key: &str, name: &str, expected: &str, found: &AttributeValue) -> StoreError {
    StoreError::corrupt(
        key,
        format!(
            "attribute `{name}` is not {expected} (found {})",
            kind(found)
        ),
    )
}

fn kind(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::B(_) => "B",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Bs(_) => "BS",
        AttributeValue::L(_) => "L",
        AttributeValue::M(_) => "M",
        AttributeValue::N(_) => "N",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::S(_) => "S",
        AttributeValue::Ss(_) => "SS",
        _ => "an unknown type",
    }
}

/// The backend name used in [`StoreError::Unavailable`].
pub const BACKEND: &str = "dynamodb";

/// A failed SDK call as a store error, with the SDK's full error chain.
pub fn unavailable(operation: &'static str, err: impl std::error::Error) -> StoreError {
    StoreError::unavailable(
        BACKEND,
        operation,
        aws_sdk_dynamodb::error::DisplayErrorContext(err),
    )
}

/// A strongly consistent read of the item with partition key `pk`: every
/// decision payhook reads back (a lost claim, a body, state) must see the
/// latest write.
pub async fn get(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: &str,
    operation: &'static str,
) -> Result<Option<Item>, StoreError> {
    let out = client
        .get_item()
        .table_name(table)
        .key(PK, s(pk))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| unavailable(operation, e))?;
    Ok(out.item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_attributes_name_the_item_and_attribute() {
        // GIVEN an item whose `attempts` is a string and `created` is not a number
        let item: Item = [
            ("attempts".to_owned(), s("three")),
            ("created".to_owned(), n("soon")),
        ]
        .into();
        // WHEN they are read as integers THEN each error names the key and attribute
        let err = item.req_i64("stripe#evt_1", "attempts").unwrap_err();
        assert!(err.to_string().contains("stripe#evt_1"), "{err}");
        assert!(
            err.to_string().contains("`attempts` is not a number"),
            "{err}"
        );
        let err = item.req_i64("stripe#evt_1", "created").unwrap_err();
        assert!(err.to_string().contains("not an integer"), "{err}");
        // AND a missing attribute is optional or an error as asked
        assert_eq!(item.opt_s("k", "status").unwrap(), None);
        assert!(item.req_s("k", "status").is_err());
    }
}
