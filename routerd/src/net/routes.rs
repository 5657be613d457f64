//! Routes: the on-link host route to an off-prefix gateway, then the default route.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};

use super::NetError;

/// A route as routerd owns it: protocol `static`, in the main table (on routerd's
/// NICs) or in one of routerd's own tables (see [`crate::plan::extra_table`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub table: u32,
    pub dst: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: u32,
    pub on_link: bool,
    pub scope_link: bool,
    /// A `local` route (delivered to the router itself), scope host.
    pub local: bool,
}

impl Route {
    fn message(&self) -> RouteMessage {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(self.dst, self.prefix_len)
            .output_interface(self.oif)
            .table_id(self.table)
            .protocol(RouteProtocol::Static);
        if let Some(gw) = self.gateway {
            b = b.gateway(gw);
        }
        if self.on_link {
            b = b.onlink();
        }
        if self.scope_link {
            b = b.scope(RouteScope::Link);
        }
        if self.local {
            b = b.kind(RouteType::Local).scope(RouteScope::Host);
        }
        b.build()
    }

    fn from_message(msg: &RouteMessage) -> Option<Route> {
        let h = &msg.header;
        let table = msg.attributes.iter().find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        });
        let table = table.unwrap_or(u32::from(h.table));
        let known = table == u32::from(RouteHeader::RT_TABLE_MAIN)
            || (crate::plan::extra_table(0)..=crate::plan::LAST_OWNED_TABLE).contains(&table);
        if h.address_family != AddressFamily::Inet || h.protocol != RouteProtocol::Static || !known {
            return None;
        }
        let mut route = Route {
            table,
            dst: Ipv4Addr::UNSPECIFIED,
            prefix_len: h.destination_prefix_length,
            gateway: None,
            oif: 0,
            on_link: h.flags.contains(RouteFlags::Onlink),
            scope_link: h.scope == RouteScope::Link,
            local: h.kind == RouteType::Local,
        };
        for a in &msg.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => route.dst = *ip,
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => route.gateway = Some(*ip),
                RouteAttribute::Oif(i) => route.oif = *i,
                _ => {}
            }
        }
        Some(route)
    }
}

/// Makes routerd's routes exactly `want`: those in the main table on `nics` and all of
/// routerd's own tables. Missing ones are added (replacing any same-destination route),
/// stale ones from an earlier config removed.
pub async fn ensure(handle: &Handle, want: &[Route], nics: &[u32]) -> Result<(), NetError> {
    let mut present = Vec::new();
    let mut stream = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| NetError::netlink("listing routes", e))?
    {
        if let Some(route) = Route::from_message(&msg) {
            if nics.contains(&route.oif) || route.table != u32::from(RouteHeader::RT_TABLE_MAIN) {
                present.push((route, msg));
            }
        }
    }
    for (route, msg) in &present {
        if !want.contains(route) {
            handle
                .route()
                .del(msg.clone())
                .execute()
                .await
                .map_err(|e| NetError::netlink(&format!("removing stale route {route:?}"), e))?;
            tracing::info!(dst = %route.dst, prefix = route.prefix_len, "stale route removed");
        }
    }
    for route in want {
        if !present.iter().any(|(p, _)| p == route) {
            handle
                .route()
                .add(route.message())
                .replace()
                .execute()
                .await
                .map_err(|e| {
                    NetError::netlink(
                        &format!(
                            "adding route to {}/{} via {:?}",
                            route.dst, route.prefix_len, route.gateway
                        ),
                        e,
                    )
                })?;
            tracing::info!(dst = %route.dst, prefix = route.prefix_len, gateway = ?route.gateway, "route set");
        }
    }
    Ok(())
}
