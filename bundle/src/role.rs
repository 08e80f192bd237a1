//! Node roles. A bundle names the roles it is for; a node of another role refuses it.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    App,
    Db,
    Gpu,
    Allinone,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::App, Role::Db, Role::Gpu, Role::Allinone];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::App => "app",
            Role::Db => "db",
            Role::Gpu => "gpu",
            Role::Allinone => "allinone",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
