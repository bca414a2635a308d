//! This node as its broker's [`NodeHandler`]: what the cluster tells it
//! that is not one room's. A new version of a shared document (moderation
//! state, the room directory) is applied here: mutes and service bans
//! reach this node's connections, rooms open, change and close. The staff
//! on duty on other nodes are counted here too. The hub takes what is one
//! room's ([`crate::broker::Handler`]).

use crate::alerts::{OnDuty, Scope};
use crate::api::SavedRooms;
use crate::broker::NodeHandler;
use crate::hub::{Accounts, Hub};
use crate::moderation::ModerationStore;
use crate::rooms::RoomDef;
use crate::store::{Document, Versioned};
use kindred_protocol::CloseCode;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) struct Node {
    pub(crate) hub: Hub,
    pub(crate) moderation: Arc<ModerationStore>,
    /// Open connections per account, so a service ban closes them all.
    pub(crate) accounts: Accounts,
    pub(crate) on_duty: Arc<OnDuty>,
    /// The configured rooms, which the shared directory's changes apply to.
    pub(crate) base_rooms: Vec<RoomDef>,
}

impl NodeHandler for Node {
    fn on_document(&self, doc: Document, text: Option<&str>, force: bool) -> serde_json::Result<()> {
        match doc {
            Document::Moderation => {
                let mutes_changed = self.moderation.install(Versioned::read(text)?, force);
                self.enforce_service_bans();
                // Reports change the document too; only a change of mutes walks the members.
                if mutes_changed {
                    self.follow_mutes();
                }
            }
            Document::Rooms => Versioned::<SavedRooms>::read(text)?.doc.reconcile(&self.hub, &self.base_rooms),
        }
        Ok(())
    }

    fn staff_scopes(&self) -> Vec<Scope> {
        self.on_duty.local_scopes()
    }

    fn on_remote_staff(&self, remote: HashMap<String, Vec<Scope>>) {
        self.on_duty.set_remote(remote);
    }
}

impl Node {
    /// The moderation document is the truth about mutes; this node's members
    /// show it. A mute made on another node is announced there only if that
    /// node held the member's record at that moment; a member leaving and
    /// coming back meanwhile (a resume) would otherwise stay listed unmuted
    /// while its sends were refused.
    fn follow_mutes(&self) {
        for room in self.hub.rooms() {
            let id = room.id();
            for (member, account) in room.local_members() {
                let muted = self.moderation.muted_until(&id, &account);
                if (member.muted, &member.muted_until) != (muted.is_some(), &muted.clone().flatten()) {
                    room.set_muted(&member.member_id, muted);
                }
            }
        }
    }

    /// A service ban (or erasure) made on another node closes this node's connections of that account.
    fn enforce_service_bans(&self) {
        for entry in self.accounts.iter() {
            let account = entry.key();
            if self.moderation.banned_from_service(account).is_some() {
                entry.value().iter().for_each(|(_, c)| c.close(CloseCode::Banned));
            } else if self.moderation.is_forgotten(account) {
                entry.value().iter().for_each(|(_, c)| c.close(CloseCode::Unauthorized));
            }
        }
    }
}
