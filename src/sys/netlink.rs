//! A small rtnetlink client: the few questions the init asks the network stack it runs
//! in, right before each dockerd start (SPEC §7, §7a).
//!
//! - [`links`]: every link with its index, name, up flag and link kind (`IFLA_INFO_KIND`
//!   of `IFLA_LINKINFO`: "bridge", "veth", ...). gVisor's netstack reports no kind for any
//!   link before release-20260810.0 (REFERENCE §4 row 16), which is what makes a restarted
//!   dockerd die with `existing interface docker0 is not a bridge`.
//! - [`stale_docker_links`]: the pure decision of which of those links to remove before
//!   restarting dockerd in gVisor; [`delete_link`] removes one (`RTM_DELLINK`, acked).
//! - [`default_route_v4`]: the IPv4 default route's device and that device's address,
//!   the uplink for the SNAT rules of SPEC §7a.
//! - [`subscribe_link_updates`]: whether this stack lets a socket join the link
//!   multicast group, as Docker 28 and later do for each container's interface
//!   (`dind-init check` predicts with it, SPEC §7).
//!
//! It speaks `NETLINK_ROUTE` synchronously on a fresh socket per call: one request, then
//! datagrams until the reply is complete (`NLMSG_DONE` of a dump, or the `NLMSG_ERROR`
//! that acks a change). Every receive waits at most [`RECV_TIMEOUT`] (`SO_RCVTIMEO`) and a
//! whole exchange at most [`EXCHANGE_BUDGET`]: it runs in PID 1 and must never hang. Every
//! failure, including a kernel that does not answer, is a returned error. Replies are
//! parsed defensively: lengths are checked against the datagram, messages and attributes
//! are aligned as `NLMSG_ALIGN`/`RTA_ALIGN` say, messages of other sequence numbers or from
//! senders other than the kernel are ignored, and malformed input is an error, never a
//! panic.
//!
//! It does not create links, addresses, routes or rules, never reads from a multicast
//! group (the subscription test binds and closes), and does not log: callers decide
//! what a result means and log it.
//!
//! See [netlink(7)](https://man7.org/linux/man-pages/man7/netlink.7.html),
//! [rtnetlink(7)](https://man7.org/linux/man-pages/man7/rtnetlink.7.html) and the kernel's
//! [netlink introduction](https://docs.kernel.org/userspace-api/netlink/intro.html).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::sockopt::{set_socket_timeout, Timeout};
use rustix::net::{
    bind, recvfrom, sendto, socket_with, AddressFamily, RecvFlags, SendFlags, SocketFlags,
    SocketType,
};

/// How long one receive waits for the kernel (`SO_RCVTIMEO`).
pub const RECV_TIMEOUT: Duration = Duration::from_millis(250);
/// How long one request and its whole reply may take.
pub const EXCHANGE_BUDGET: Duration = Duration::from_millis(500);
/// How often a dump is retried when the kernel says it changed while dumping.
const DUMP_ATTEMPTS: usize = 3;
/// Receive buffer. The kernel sizes dump datagrams by the reader's buffer up to 32 KiB
/// (`netlink_dump`, net/netlink/af_netlink.c); anything larger is caught by `MSG_TRUNC`.
const RECV_BUF: usize = 64 * 1024;

// netlink(7): the message header and the control messages.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
/// NLM_F_ROOT | NLM_F_MATCH.
const NLM_F_DUMP: u16 = 0x300;
/// The dump was interrupted by a change and may be inconsistent (kernel 4.4+).
const NLM_F_DUMP_INTR: u16 = 0x10;

// rtnetlink(7): message types.
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

/// `RTMGRP_LINK`, the bind(2) group bit of `RTNLGRP_LINK` (1 << (RTNLGRP_LINK - 1)).
const RTMGRP_LINK: u32 = 1;

// Attribute header: the high bits of the type are flags (NLA_F_NESTED,
// NLA_F_NET_BYTEORDER), not part of the type.
const NLA_HDRLEN: usize = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;

// struct ifinfomsg and its attributes (linux/if_link.h).
const IFINFOMSG_LEN: usize = 16;
const IFF_UP: u32 = 0x1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;

// struct ifaddrmsg and its attributes (linux/if_addr.h).
const IFADDRMSG_LEN: usize = 8;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_SECONDARY: u32 = 0x01;

// struct rtmsg and its attributes (linux/rtnetlink.h).
const RTMSG_LEN: usize = 12;
const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST: u8 = 1;
const RTA_OIF: u16 = 4;
const RTA_PRIORITY: u16 = 6;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
/// struct rtnexthop: len u16, flags u8, hops u8, ifindex i32.
const RTNH_LEN: usize = 8;

/// A network link (interface) as `RTM_GETLINK` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` of `IFLA_LINKINFO`, e.g. "bridge", "veth"; `None` when the kernel
    /// reports none (loopback on Linux; every link in gVisor's netstack before
    /// release-20260810.0: that is why [`stale_docker_links`] exists).
    pub kind: Option<String>,
    /// `IFF_UP` is set.
    pub up: bool,
    /// `IFLA_MTU`, when reported.
    pub mtu: Option<u32>,
}

/// The uplink: the IPv4 default route's device and that device's IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dev: String,
    pub addr: Ipv4Addr,
}

/// Every link of the network namespace (an `RTM_GETLINK` dump).
pub fn links() -> io::Result<Vec<Link>> {
    let mut body = [0u8; IFINFOMSG_LEN];
    body[0] = AF_UNSPEC;
    dump(RTM_GETLINK, RTM_NEWLINK, &body, |payload| {
        parse_link(payload).map(Some)
    })
}

/// Deletes the link with this index (`RTM_DELLINK`) and waits for the kernel's ack.
/// A refusal comes back as its errno (`ENODEV` for a link that is gone, `EPERM`
/// without CAP_NET_ADMIN, `EOPNOTSUPP` for a link that cannot be deleted).
pub fn delete_link(index: u32) -> io::Result<()> {
    let index = i32::try_from(index)
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("netlink: no link can have index {index}"),
            )
        })?;
    let mut body = [0u8; IFINFOMSG_LEN];
    body[0] = AF_UNSPEC;
    body[4..8].copy_from_slice(&index.to_ne_bytes());
    transact(
        RTM_DELLINK,
        NLM_F_REQUEST | NLM_F_ACK,
        &body,
        None,
        &mut |_| Ok(()),
    )
    .map(|_| ())
}

/// The IPv4 default route of the main table (`RTM_GETROUTE` dump; of several, the one
/// with the lowest metric, as the kernel would choose) with its device's name
/// (`RTM_GETLINK`) and that device's first primary IPv4 address (`RTM_GETADDR`).
///
/// `None` when there is no such route, or when its device has no IPv4 address: either
/// way there is no uplink address to SNAT to.
pub fn default_route_v4() -> io::Result<Option<Route>> {
    let mut body = [0u8; RTMSG_LEN];
    body[0] = AF_INET;
    let routes = dump(RTM_GETROUTE, RTM_NEWROUTE, &body, parse_route)?;
    let Some(route) = pick_default(&routes) else {
        return Ok(None);
    };
    let links = links()?;
    let Some(link) = links.iter().find(|l| l.index == route.oif) else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "netlink: the IPv4 default route's device (index {}) is not among the links",
                route.oif
            ),
        ));
    };
    let mut body = [0u8; IFADDRMSG_LEN];
    body[0] = AF_INET;
    let addrs = dump(RTM_GETADDR, RTM_NEWADDR, &body, parse_addr)?;
    Ok(pick_address(&addrs, route.oif).map(|addr| Route {
        dev: link.name.clone(),
        addr,
    }))
}

/// The MTU of the IPv4 default route's device (the uplink), with its name: `None`
/// when there is no default route or the stack reports no MTU.
pub fn uplink_mtu() -> io::Result<Option<(String, u32)>> {
    let Some(route) = default_route_v4()? else {
        return Ok(None);
    };
    Ok(links()?
        .into_iter()
        .find(|l| l.name == route.dev)
        .and_then(|l| l.mtu.map(|m| (l.name, m))))
}

/// Joins the link multicast group (`RTMGRP_LINK`) the way Docker 28 and later do before
/// they wait for a container's interface (vishvananda/netlink `LinkSubscribe`: bind(2)
/// with the group bit set), then closes the socket at once. `Err` is the stack's
/// refusal: runsc's netlink before release-20260810 has no multicast groups and refuses
/// with a permission error (measured: Docker 28.5 then fails every container on a
/// bridge with `failed to subscribe to link updates: permission denied`). Linux lets any
/// process join this group.
pub fn subscribe_link_updates() -> io::Result<()> {
    let fd = socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None,
    )?;
    bind(&fd, &SocketAddrNetlink::new(0, RTMGRP_LINK))?;
    Ok(())
}

/// The links dind-init removes before restarting dockerd in gVisor (SPEC §7): `docker0`
/// when it reports no link kind, and every `br-<12 hex>` link (Docker's user-defined
/// bridges). A docker0 that reports a kind (any kernel that does) means the stack can
/// tell bridges apart and dockerd will adopt its bridges: then nothing is stale.
pub fn stale_docker_links(links: &[Link]) -> Vec<&Link> {
    let kindless_docker0 = links
        .iter()
        .any(|l| l.name == "docker0" && l.kind.is_none());
    if !kindless_docker0 {
        return Vec::new();
    }
    links
        .iter()
        .filter(|l| l.name == "docker0" || is_user_bridge_name(&l.name))
        .collect()
}

/// `br-` and the first 12 lowercase hex digits of a network id: the names Docker gives
/// the bridges of user-defined networks.
fn is_user_bridge_name(name: &str) -> bool {
    name.strip_prefix("br-").is_some_and(|id| {
        id.len() == 12
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

// ---------------------------------------------------------------------------
// The exchange: one socket, one request, datagrams until the reply is complete.

/// Runs a dump, retrying when the kernel flags it as interrupted by a change.
fn dump<T>(
    request: u16,
    reply: u16,
    body: &[u8],
    parse: impl Fn(&[u8]) -> io::Result<Option<T>>,
) -> io::Result<Vec<T>> {
    for _ in 0..DUMP_ATTEMPTS {
        let mut items = Vec::new();
        let interrupted = transact(
            request,
            NLM_F_REQUEST | NLM_F_DUMP,
            body,
            Some(reply),
            &mut |payload| {
                if let Some(item) = parse(payload)? {
                    items.push(item);
                }
                Ok(())
            },
        )?;
        if !interrupted {
            return Ok(items);
        }
    }
    Err(io::Error::other(format!(
        "netlink: dump of message type {request} was interrupted by changes {DUMP_ATTEMPTS} times"
    )))
}

/// Sends one request on a fresh socket and feeds the reply's messages of type `want` to
/// `on_message` until the reply is complete. Returns whether the kernel flagged the
/// reply as interrupted (`NLM_F_DUMP_INTR`).
fn transact(
    kind: u16,
    flags: u16,
    body: &[u8],
    want: Option<u16>,
    on_message: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<bool> {
    let fd = open()?;
    let seq = next_seq();
    let request = request(kind, flags, seq, body);
    let kernel = SocketAddrNetlink::new(0, 0);
    let sent = sendto(&fd, &request, SendFlags::empty(), &kernel)?;
    if sent != request.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "netlink: sent {sent} of {} bytes of a request",
                request.len()
            ),
        ));
    }
    let deadline = Instant::now() + EXCHANGE_BUDGET;
    let mut reply = Reply::new(seq, want);
    let mut buf = vec![0u8; RECV_BUF];
    while !reply.finished {
        if Instant::now() >= deadline {
            return Err(timed_out(kind, EXCHANGE_BUDGET, "for the whole reply"));
        }
        let (len, full_len, from) = match recvfrom(&fd, &mut buf[..], RecvFlags::TRUNC) {
            Ok(got) => got,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Err(timed_out(kind, RECV_TIMEOUT, "for a datagram")),
            Err(e) => return Err(e.into()),
        };
        if full_len > len {
            return Err(malformed(format!(
                "a {full_len}-byte datagram does not fit the {len}-byte buffer"
            )));
        }
        // Only the kernel (port 0) answers; a datagram from another socket is not ours.
        // An address that cannot be read is given the benefit of the doubt.
        let sender = from.and_then(|a| SocketAddrNetlink::try_from(a).ok());
        if matches!(sender, Some(a) if a.pid() != 0) {
            continue;
        }
        let datagram = buf.get(..len).unwrap_or_default();
        reply.feed(datagram, on_message)?;
    }
    Ok(reply.interrupted)
}

/// A `NETLINK_ROUTE` socket with both timeouts set, bound to a port the kernel picks.
fn open() -> io::Result<OwnedFd> {
    // protocol None is NETLINK_ROUTE (0).
    let fd = socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None,
    )?;
    set_socket_timeout(&fd, Timeout::Recv, Some(RECV_TIMEOUT))?;
    set_socket_timeout(&fd, Timeout::Send, Some(RECV_TIMEOUT))?;
    bind(&fd, &SocketAddrNetlink::new(0, 0))?;
    Ok(fd)
}

/// Sequence numbers, unique within the process, so that a reply can be matched to its
/// request.
fn next_seq() -> u32 {
    static SEQ: AtomicU32 = AtomicU32::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// A request: `struct nlmsghdr` (native byte order, port 0: the kernel fills it in)
/// followed by the body.
fn request(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + align(body.len());
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(body);
    msg.resize(len, 0);
    msg
}

fn timed_out(kind: u16, waited: Duration, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "netlink: no complete reply to message type {kind}: waited {}s {what}",
            waited.as_secs()
        ),
    )
}

fn malformed(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("netlink: malformed reply: {what}"),
    )
}

// ---------------------------------------------------------------------------
// Parsing. Pure functions of bytes, tested on fixtures below.

/// The state of one reply as its datagrams arrive.
#[derive(Debug)]
struct Reply {
    seq: u32,
    /// The message type of a dump's items; `None` for a request that only gets an ack.
    want: Option<u16>,
    finished: bool,
    interrupted: bool,
}

impl Reply {
    fn new(seq: u32, want: Option<u16>) -> Reply {
        Reply {
            seq,
            want,
            finished: false,
            interrupted: false,
        }
    }

    /// Takes one datagram: passes the payloads of wanted messages on, and notes the end
    /// (`NLMSG_DONE`, or `NLMSG_ERROR` with error 0: an ack). An `NLMSG_ERROR` with an
    /// errno is that error. Messages of other sequence numbers are not ours and ignored.
    fn feed(
        &mut self,
        mut datagram: &[u8],
        on_message: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        while let Some((msg, rest)) = next_message(datagram)? {
            datagram = rest;
            if msg.seq != self.seq {
                continue;
            }
            if msg.flags & NLM_F_DUMP_INTR != 0 {
                self.interrupted = true;
            }
            match msg.kind {
                NLMSG_NOOP => {}
                NLMSG_ERROR => {
                    // struct nlmsgerr: int error, then the request's header.
                    let code = read_i32(msg.payload, 0)
                        .ok_or_else(|| malformed("NLMSG_ERROR without an error code"))?;
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(code.saturating_abs()));
                    }
                    self.finished = true;
                    return Ok(());
                }
                NLMSG_DONE => {
                    // Since Linux 4.x the payload is the dump's final error, if any.
                    if let Some(code) = read_i32(msg.payload, 0).filter(|c| *c < 0) {
                        return Err(io::Error::from_raw_os_error(code.saturating_abs()));
                    }
                    self.finished = true;
                    return Ok(());
                }
                NLMSG_OVERRUN => return Err(malformed("NLMSG_OVERRUN: data was lost")),
                kind if Some(kind) == self.want => on_message(msg.payload)?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// One netlink message of a datagram.
#[derive(Debug)]
struct Message<'a> {
    kind: u16,
    flags: u16,
    seq: u32,
    payload: &'a [u8],
}

/// The first message of `buf` and what follows it (from the next `NLMSG_ALIGN`ed
/// offset); `None` at the end.
fn next_message(buf: &[u8]) -> io::Result<Option<(Message<'_>, &[u8])>> {
    if buf.is_empty() {
        return Ok(None);
    }
    let header = buf
        .get(..NLMSG_HDRLEN)
        .ok_or_else(|| malformed(format!("{} trailing bytes", buf.len())))?;
    let len = read_u32(header, 0).unwrap_or(0) as usize;
    if len < NLMSG_HDRLEN || len > buf.len() {
        return Err(malformed(format!(
            "message length {len} with {} bytes left",
            buf.len()
        )));
    }
    let msg = Message {
        kind: read_u16(header, 4).unwrap_or(0),
        flags: read_u16(header, 6).unwrap_or(0),
        seq: read_u32(header, 8).unwrap_or(0),
        payload: buf.get(NLMSG_HDRLEN..len).unwrap_or_default(),
    };
    let rest = buf.get(align(len).min(buf.len())..).unwrap_or_default();
    Ok(Some((msg, rest)))
}

/// One attribute (`struct rtattr` / `struct nlattr`), its type without the flag bits.
#[derive(Debug)]
struct Attr<'a> {
    kind: u16,
    payload: &'a [u8],
}

/// The attributes of `buf`, each at an `RTA_ALIGN`ed offset. Fewer than 4 bytes left
/// over is padding (as `RTA_OK` sees it); an attribute that does not fit is an error.
fn attributes(mut buf: &[u8]) -> io::Result<Vec<Attr<'_>>> {
    let mut attrs = Vec::new();
    while buf.len() >= NLA_HDRLEN {
        let len = usize::from(read_u16(buf, 0).unwrap_or(0));
        if len < NLA_HDRLEN || len > buf.len() {
            return Err(malformed(format!(
                "attribute length {len} with {} bytes left",
                buf.len()
            )));
        }
        attrs.push(Attr {
            kind: read_u16(buf, 2).unwrap_or(0) & NLA_TYPE_MASK,
            payload: buf.get(NLA_HDRLEN..len).unwrap_or_default(),
        });
        buf = buf.get(align(len).min(buf.len())..).unwrap_or_default();
    }
    Ok(attrs)
}

/// Splits a message payload into its fixed header (`size` bytes) and its attributes.
fn split_fixed<'a>(payload: &'a [u8], size: usize, what: &str) -> io::Result<(&'a [u8], &'a [u8])> {
    let fixed = payload.get(..size).ok_or_else(|| {
        malformed(format!(
            "{what} of {} bytes, shorter than its {size}-byte header",
            payload.len()
        ))
    })?;
    let attrs = payload
        .get(align(size).min(payload.len())..)
        .unwrap_or_default();
    Ok((fixed, attrs))
}

/// An `RTM_NEWLINK` payload: `struct ifinfomsg` and attributes.
fn parse_link(payload: &[u8]) -> io::Result<Link> {
    let (ifi, attrs) = split_fixed(payload, IFINFOMSG_LEN, "link message")?;
    let raw_index = read_i32(ifi, 4).unwrap_or(0);
    let index =
        u32::try_from(raw_index).map_err(|_| malformed(format!("link index {raw_index}")))?;
    let flags = read_u32(ifi, 8).unwrap_or(0);
    let mut name = None;
    let mut kind = None;
    let mut mtu = None;
    for attr in attributes(attrs)? {
        match attr.kind {
            IFLA_IFNAME => name = Some(c_string(attr.payload)),
            IFLA_MTU => mtu = read_u32(attr.payload, 0),
            IFLA_LINKINFO => {
                for info in attributes(attr.payload)? {
                    if info.kind == IFLA_INFO_KIND {
                        kind = Some(c_string(info.payload)).filter(|k| !k.is_empty());
                    }
                }
            }
            _ => {}
        }
    }
    let name = name.ok_or_else(|| malformed(format!("link {index} without a name")))?;
    Ok(Link {
        index,
        name,
        kind,
        up: flags & IFF_UP != 0,
        mtu,
    })
}

/// A candidate default route: its device and metric.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DefaultRoute {
    oif: u32,
    priority: u32,
}

/// An `RTM_NEWROUTE` payload: `Some` for an IPv4 unicast route to 0.0.0.0/0 in the main
/// table that names a device (`RTA_OIF`, or the first hop of `RTA_MULTIPATH`).
fn parse_route(payload: &[u8]) -> io::Result<Option<DefaultRoute>> {
    let (rtm, attrs) = split_fixed(payload, RTMSG_LEN, "route message")?;
    let family = rtm.first().copied().unwrap_or(0);
    let dst_len = rtm.get(1).copied().unwrap_or(0);
    let mut table = u32::from(rtm.get(4).copied().unwrap_or(0));
    let route_type = rtm.get(7).copied().unwrap_or(0);
    // Dumps are not filtered by family everywhere (gVisor's is not).
    if family != AF_INET || dst_len != 0 || route_type != RTN_UNICAST {
        return Ok(None);
    }
    let mut oif = None;
    let mut priority = 0;
    for attr in attributes(attrs)? {
        match attr.kind {
            // Tables above 255 are only in RTA_TABLE (rtm_table is then RT_TABLE_COMPAT).
            RTA_TABLE => table = read_u32(attr.payload, 0).unwrap_or(table),
            RTA_OIF => oif = read_u32(attr.payload, 0).filter(|i| *i != 0).or(oif),
            RTA_PRIORITY => priority = read_u32(attr.payload, 0).unwrap_or(0),
            RTA_MULTIPATH if oif.is_none() => oif = first_hop(attr.payload),
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN {
        return Ok(None);
    }
    Ok(oif.map(|oif| DefaultRoute { oif, priority }))
}

/// The device of the first `struct rtnexthop` of an `RTA_MULTIPATH` attribute.
fn first_hop(payload: &[u8]) -> Option<u32> {
    let len = usize::from(read_u16(payload, 0)?);
    if len < RTNH_LEN || len > payload.len() {
        return None;
    }
    read_u32(payload, 4).filter(|i| *i != 0)
}

/// The route the kernel would use: the lowest metric, the first of equals.
fn pick_default(routes: &[DefaultRoute]) -> Option<&DefaultRoute> {
    routes.iter().min_by_key(|r| r.priority)
}

/// An IPv4 address of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Address {
    index: u32,
    addr: Ipv4Addr,
    secondary: bool,
}

/// An `RTM_NEWADDR` payload: `Some` for an IPv4 address. The local address is
/// `IFA_LOCAL`; `IFA_ADDRESS` is the peer's on point-to-point links, so it only counts
/// when there is no `IFA_LOCAL`.
fn parse_addr(payload: &[u8]) -> io::Result<Option<Address>> {
    let (ifa, attrs) = split_fixed(payload, IFADDRMSG_LEN, "address message")?;
    if ifa.first().copied() != Some(AF_INET) {
        return Ok(None);
    }
    let mut flags = u32::from(ifa.get(2).copied().unwrap_or(0));
    let index = read_u32(ifa, 4).unwrap_or(0);
    let mut local = None;
    let mut address = None;
    for attr in attributes(attrs)? {
        match attr.kind {
            IFA_LOCAL => local = Some(ipv4(attr.payload)?),
            IFA_ADDRESS => address = Some(ipv4(attr.payload)?),
            // The full flags; ifa_flags holds only the low 8 bits.
            IFA_FLAGS => flags = read_u32(attr.payload, 0).unwrap_or(flags),
            _ => {}
        }
    }
    Ok(local.or(address).map(|addr| Address {
        index,
        addr,
        secondary: flags & IFA_F_SECONDARY != 0,
    }))
}

/// The device's first primary address, else its first address.
fn pick_address(addrs: &[Address], index: u32) -> Option<Ipv4Addr> {
    let mut of_dev = addrs.iter().filter(|a| a.index == index);
    of_dev
        .clone()
        .find(|a| !a.secondary)
        .or_else(|| of_dev.next())
        .map(|a| a.addr)
}

fn ipv4(payload: &[u8]) -> io::Result<Ipv4Addr> {
    let octets: [u8; 4] = payload
        .try_into()
        .map_err(|_| malformed(format!("IPv4 address of {} bytes", payload.len())))?;
    Ok(Ipv4Addr::from(octets))
}

/// A NUL-terminated (or not) string attribute; interface names are bytes, so a name
/// that is not UTF-8 is shown lossily rather than failing the whole dump.
fn c_string(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(payload.len());
    String::from_utf8_lossy(payload.get(..end).unwrap_or_default()).into_owned()
}

/// `NLMSG_ALIGN` / `RTA_ALIGN`: up to a multiple of 4.
fn align(len: usize) -> usize {
    len.saturating_add(3) & !3
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    let bytes = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes(bytes.try_into().ok()?))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    read_u32(buf, at).map(|v| i32::from_ne_bytes(v.to_ne_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixture builders: the kernel's layouts, written out by hand.

    fn nlmsg(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = request(kind, flags, seq, body);
        // request() pads; a reply's length field counts the unpadded body.
        let len = (NLMSG_HDRLEN + body.len()) as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m
    }

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = NLA_HDRLEN + payload.len();
        let mut a = Vec::new();
        a.extend_from_slice(&(len as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(align(len), 0);
        a
    }

    fn ifinfomsg(index: i32, flags: u32) -> Vec<u8> {
        let mut b = vec![0u8; IFINFOMSG_LEN];
        b[4..8].copy_from_slice(&index.to_ne_bytes());
        b[8..12].copy_from_slice(&flags.to_ne_bytes());
        b
    }

    fn link_payload(index: i32, name: &str, kind: Option<&str>, up: bool) -> Vec<u8> {
        let mut p = ifinfomsg(index, if up { IFF_UP | 0x40 } else { 0x40 });
        p.extend(attr(IFLA_IFNAME, format!("{name}\0").as_bytes()));
        p.extend(attr(4, &1500u32.to_ne_bytes())); // IFLA_MTU, ignored
        if let Some(kind) = kind {
            let info = attr(IFLA_INFO_KIND, format!("{kind}\0").as_bytes());
            // The kernel marks nested attributes with NLA_F_NESTED.
            p.extend(attr(IFLA_LINKINFO | 0x8000, &info));
        }
        p
    }

    fn rtmsg(family: u8, dst_len: u8, table: u8, route_type: u8) -> Vec<u8> {
        vec![family, dst_len, 0, 0, table, 3, 0, route_type, 0, 0, 0, 0]
    }

    fn ifaddrmsg(family: u8, flags: u8, index: u32) -> Vec<u8> {
        let mut b = vec![family, 24, flags, 0];
        b.extend_from_slice(&index.to_ne_bytes());
        b
    }

    fn collect(reply: &mut Reply, datagrams: &[Vec<u8>]) -> io::Result<Vec<Link>> {
        let mut out = Vec::new();
        for d in datagrams {
            reply.feed(d, &mut |p| {
                out.push(parse_link(p)?);
                Ok(())
            })?;
        }
        Ok(out)
    }

    fn link(index: u32, name: &str, kind: Option<&str>) -> Link {
        Link {
            index,
            name: name.to_string(),
            kind: kind.map(str::to_string),
            up: true,
            mtu: Some(1500),
        }
    }

    #[test]
    fn a_link_with_its_kind_name_and_flags() {
        let l = parse_link(&link_payload(7, "docker0", Some("bridge"), true)).unwrap();
        assert_eq!(l, link(7, "docker0", Some("bridge")));
        let l = parse_link(&link_payload(1, "lo", None, false)).unwrap();
        assert_eq!(
            l,
            Link {
                up: false,
                ..link(1, "lo", None)
            }
        );
    }

    #[test]
    fn linkinfo_without_a_kind_or_with_an_empty_one_is_no_kind() {
        let mut p = ifinfomsg(3, 0);
        p.extend(attr(IFLA_IFNAME, b"eth0\0"));
        p.extend(attr(IFLA_LINKINFO, &attr(2, b"xx"))); // IFLA_INFO_DATA only
        assert_eq!(parse_link(&p).unwrap().kind, None);
        let mut p = ifinfomsg(3, 0);
        p.extend(attr(IFLA_IFNAME, b"eth0")); // no NUL: still a name
        p.extend(attr(IFLA_LINKINFO, &attr(IFLA_INFO_KIND, b"\0")));
        let l = parse_link(&p).unwrap();
        assert_eq!((l.name.as_str(), l.kind), ("eth0", None));
    }

    #[test]
    fn malformed_links_are_errors() {
        let good = link_payload(2, "dummy0", Some("dummy"), true);
        let mut no_name = ifinfomsg(2, 0);
        no_name.extend(attr(4, &1500u32.to_ne_bytes()));
        let mut attr_too_long = ifinfomsg(2, 0);
        attr_too_long.extend(attr(IFLA_IFNAME, b"x\0"));
        attr_too_long[IFINFOMSG_LEN..IFINFOMSG_LEN + 2].copy_from_slice(&64u16.to_ne_bytes());
        let mut attr_too_short = ifinfomsg(2, 0);
        attr_too_short.extend(attr(IFLA_IFNAME, b"x\0"));
        attr_too_short[IFINFOMSG_LEN..IFINFOMSG_LEN + 2].copy_from_slice(&2u16.to_ne_bytes());
        let mut nested_too_long = ifinfomsg(2, 0);
        nested_too_long.extend(attr(IFLA_IFNAME, b"x\0"));
        let mut info = attr(IFLA_INFO_KIND, b"bridge\0");
        info[0..2].copy_from_slice(&40u16.to_ne_bytes());
        nested_too_long.extend(attr(IFLA_LINKINFO, &info));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("short header", good[..IFINFOMSG_LEN - 1].to_vec()),
            ("negative index", link_payload(-1, "x", None, false)),
            ("no name", no_name),
            ("attribute longer than the rest", attr_too_long),
            ("attribute shorter than its header", attr_too_short),
            ("nested attribute too long", nested_too_long),
        ];
        for (what, bytes) in cases {
            let err = parse_link(&bytes).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
        }
        // Up to 3 bytes of trailing padding are not an attribute.
        let mut padded = good.clone();
        padded.extend([0, 0, 0]);
        assert_eq!(parse_link(&padded).unwrap().name, "dummy0");
    }

    #[test]
    fn a_multipart_dump_is_read_until_done() {
        let seq = 42;
        let first = [
            nlmsg(RTM_NEWLINK, 2, seq, &link_payload(1, "lo", None, true)),
            nlmsg(RTM_NEWLINK, 2, seq, &link_payload(2, "docker0", None, true)),
        ]
        .concat();
        let second = [
            nlmsg(
                RTM_NEWLINK,
                2,
                seq,
                &link_payload(5, "br-0123456789ab", None, true),
            ),
            // A stale message of an earlier request: not ours.
            nlmsg(RTM_NEWLINK, 2, seq - 1, &link_payload(9, "old", None, true)),
            nlmsg(NLMSG_NOOP, 0, seq, &[]),
        ]
        .concat();
        let done = nlmsg(NLMSG_DONE, 2, seq, &0i32.to_ne_bytes());
        let mut reply = Reply::new(seq, Some(RTM_NEWLINK));
        let got = collect(&mut reply, &[first, second]).unwrap();
        assert!(!reply.finished);
        assert_eq!(got.len(), 3);
        assert!(collect(&mut reply, &[done]).unwrap().is_empty());
        assert!(reply.finished && !reply.interrupted);
        let names: Vec<&str> = got.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["lo", "docker0", "br-0123456789ab"]);
    }

    #[test]
    fn replies_end_with_an_ack_or_an_error() {
        let seq = 7;
        let mut ack = 0i32.to_ne_bytes().to_vec();
        ack.extend(request(RTM_DELLINK, 5, seq, &[]).get(..16).unwrap());
        let mut enodev = (-19i32).to_ne_bytes().to_vec();
        enodev.extend_from_slice(&[0; 16]);
        // gVisor's NLMSG_DONE carries an int64 0.
        let done_gvisor = nlmsg(NLMSG_DONE, 2, seq, &0i64.to_ne_bytes());
        let done_bare = nlmsg(NLMSG_DONE, 2, seq, &[]);
        let done_error = nlmsg(NLMSG_DONE, 2, seq, &(-16i32).to_ne_bytes());
        struct Case {
            what: &'static str,
            datagram: Vec<u8>,
            finished: bool,
            errno: Option<i32>,
        }
        let cases = [
            Case {
                what: "ack",
                datagram: nlmsg(NLMSG_ERROR, 0, seq, &ack),
                finished: true,
                errno: None,
            },
            Case {
                what: "ENODEV",
                datagram: nlmsg(NLMSG_ERROR, 0, seq, &enodev),
                finished: false,
                errno: Some(19),
            },
            Case {
                what: "error of another request",
                datagram: nlmsg(NLMSG_ERROR, 0, seq + 1, &enodev),
                finished: false,
                errno: None,
            },
            Case {
                what: "gVisor done",
                datagram: done_gvisor,
                finished: true,
                errno: None,
            },
            Case {
                what: "bare done",
                datagram: done_bare,
                finished: true,
                errno: None,
            },
            Case {
                what: "done with an error",
                datagram: done_error,
                finished: false,
                errno: Some(16),
            },
        ];
        for c in cases {
            let mut reply = Reply::new(seq, None);
            let got = reply.feed(&c.datagram, &mut |_| panic!("no items expected"));
            assert_eq!(
                got.as_ref().err().and_then(io::Error::raw_os_error),
                c.errno,
                "{}: {got:?}",
                c.what
            );
            assert_eq!(reply.finished, c.finished, "{}", c.what);
        }
    }

    #[test]
    fn an_interrupted_dump_is_noticed() {
        let seq = 3;
        let d = [
            nlmsg(
                RTM_NEWLINK,
                2 | NLM_F_DUMP_INTR,
                seq,
                &link_payload(1, "lo", None, true),
            ),
            nlmsg(NLMSG_DONE, 2 | NLM_F_DUMP_INTR, seq, &0i32.to_ne_bytes()),
        ]
        .concat();
        let mut reply = Reply::new(seq, Some(RTM_NEWLINK));
        assert_eq!(collect(&mut reply, &[d]).unwrap().len(), 1);
        assert!(reply.finished && reply.interrupted);
    }

    #[test]
    fn malformed_datagrams_are_errors() {
        let seq = 1;
        let good = nlmsg(RTM_NEWLINK, 2, seq, &link_payload(1, "lo", None, true));
        let with_len = |len: u32| {
            let mut d = good.clone();
            d[0..4].copy_from_slice(&len.to_ne_bytes());
            d
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("length 0", with_len(0)),
            ("length below the header", with_len(15)),
            (
                "length beyond the datagram",
                with_len(good.len() as u32 + 1),
            ),
            ("trailing bytes", [good.clone(), vec![0; 5]].concat()),
            ("short NLMSG_ERROR", nlmsg(NLMSG_ERROR, 0, seq, &[0, 0])),
            ("overrun", nlmsg(NLMSG_OVERRUN, 0, seq, &[])),
            ("truncated item", nlmsg(RTM_NEWLINK, 2, seq, &[0; 8])),
        ];
        for (what, d) in cases {
            let mut reply = Reply::new(seq, Some(RTM_NEWLINK));
            let err = collect(&mut reply, &[d]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}: {err}");
        }
    }

    #[test]
    fn default_routes_are_ipv4_unicast_main_table_with_a_device() {
        let oif = |i: u32| attr(RTA_OIF, &i.to_ne_bytes());
        let with = |head: Vec<u8>, attrs: &[Vec<u8>]| [head, attrs.concat()].concat();
        let gw = attr(5, &[10, 99, 0, 1]);
        let mut multipath = Vec::new();
        multipath.extend_from_slice(&16u16.to_ne_bytes());
        multipath.extend_from_slice(&[0, 0]);
        multipath.extend_from_slice(&6u32.to_ne_bytes());
        multipath.extend(attr(5, &[10, 0, 0, 1]));
        let dr = |oif, priority| Some(DefaultRoute { oif, priority });
        let cases: Vec<(&str, Vec<u8>, Option<DefaultRoute>)> = vec![
            (
                "linux: default via gateway",
                with(
                    rtmsg(2, 0, 254, 1),
                    &[attr(RTA_TABLE, &254u32.to_ne_bytes()), gw.clone(), oif(3)],
                ),
                dr(3, 0),
            ),
            (
                // gVisor also sends an attribute of type 254 with one byte.
                "gvisor",
                with(
                    rtmsg(2, 0, 254, 1),
                    &[attr(254, &[123]), oif(2), gw.clone()],
                ),
                dr(2, 0),
            ),
            (
                "metric",
                with(
                    rtmsg(2, 0, 254, 1),
                    &[oif(4), attr(RTA_PRIORITY, &100u32.to_ne_bytes())],
                ),
                dr(4, 100),
            ),
            (
                "multipath",
                with(rtmsg(2, 0, 254, 1), &[attr(RTA_MULTIPATH, &multipath)]),
                dr(6, 0),
            ),
            ("no device", with(rtmsg(2, 0, 254, 1), &[gw]), None),
            ("not default", with(rtmsg(2, 24, 254, 1), &[oif(3)]), None),
            ("ipv6", with(rtmsg(10, 0, 254, 1), &[oif(3)]), None),
            ("local table", with(rtmsg(2, 0, 255, 2), &[oif(3)]), None),
            ("other table", with(rtmsg(2, 0, 100, 1), &[oif(3)]), None),
            (
                "table above 255",
                with(
                    rtmsg(2, 0, 252, 1),
                    &[attr(RTA_TABLE, &1000u32.to_ne_bytes()), oif(3)],
                ),
                None,
            ),
            ("blackhole", with(rtmsg(2, 0, 254, 6), &[]), None),
        ];
        for (what, payload, want) in cases {
            assert_eq!(parse_route(&payload).unwrap(), want, "{what}");
        }
        assert!(parse_route(&rtmsg(2, 0, 254, 1)[..11]).is_err());
    }

    #[test]
    fn the_lowest_metric_wins_then_the_first() {
        let r = |oif, priority| DefaultRoute { oif, priority };
        assert_eq!(pick_default(&[]), None);
        let routes = [r(1, 200), r(2, 100), r(3, 100)];
        assert_eq!(pick_default(&routes), Some(&r(2, 100)));
    }

    #[test]
    fn addresses_prefer_local_and_primary() {
        let local = attr(IFA_LOCAL, &[10, 99, 0, 2]);
        let peer = attr(IFA_ADDRESS, &[10, 99, 0, 9]);
        let a = |index, addr: [u8; 4], secondary| Address {
            index,
            addr: Ipv4Addr::from(addr),
            secondary,
        };
        let p = [ifaddrmsg(2, 0, 3), peer.clone(), local.clone()].concat();
        assert_eq!(parse_addr(&p).unwrap(), Some(a(3, [10, 99, 0, 2], false)));
        let p = [ifaddrmsg(2, 0, 3), peer.clone()].concat();
        assert_eq!(parse_addr(&p).unwrap(), Some(a(3, [10, 99, 0, 9], false)));
        let p = [ifaddrmsg(2, 1, 3), local.clone()].concat();
        assert_eq!(parse_addr(&p).unwrap(), Some(a(3, [10, 99, 0, 2], true)));
        let p = [
            ifaddrmsg(2, 0, 3),
            local.clone(),
            attr(IFA_FLAGS, &0x81u32.to_ne_bytes()),
        ]
        .concat();
        assert!(parse_addr(&p).unwrap().unwrap().secondary);
        // gVisor does not filter its dump by family.
        let p = [ifaddrmsg(10, 0, 3), attr(IFA_LOCAL, &[0xfe; 16])].concat();
        assert_eq!(parse_addr(&p).unwrap(), None);
        let p = [ifaddrmsg(2, 0, 3), attr(IFA_LOCAL, &[10, 0, 0])].concat();
        assert!(parse_addr(&p).is_err());
        assert!(parse_addr(&[2, 24, 0]).is_err());

        let addrs = [
            a(2, [192, 168, 0, 5], false),
            a(3, [10, 99, 0, 3], true),
            a(3, [10, 99, 0, 2], false),
        ];
        assert_eq!(pick_address(&addrs, 3), Some(Ipv4Addr::new(10, 99, 0, 2)));
        assert_eq!(
            pick_address(&addrs[1..2], 3),
            Some(Ipv4Addr::new(10, 99, 0, 3))
        );
        assert_eq!(pick_address(&addrs, 4), None);
    }

    #[test]
    fn stale_docker_links_only_where_docker0_has_no_kind() {
        let links = |ls: &[(&str, Option<&str>)]| -> Vec<Link> {
            ls.iter()
                .enumerate()
                .map(|(i, (n, k))| link(i as u32 + 1, n, *k))
                .collect()
        };
        let cases: Vec<(&str, Vec<Link>, Vec<&str>)> = vec![
            ("nothing", links(&[]), vec![]),
            (
                "no docker0",
                links(&[("lo", None), ("br-0123456789ab", None)]),
                vec![],
            ),
            (
                "linux: docker0 is a bridge",
                links(&[
                    ("lo", None),
                    ("docker0", Some("bridge")),
                    ("br-0123456789ab", Some("bridge")),
                ]),
                vec![],
            ),
            (
                "gvisor: no kinds",
                links(&[
                    ("lo", None),
                    ("eth0", None),
                    ("docker0", None),
                    ("br-0123456789ab", None),
                    ("br-ffffffffffff", None),
                    ("veth1a2b3c", None),
                ]),
                vec!["docker0", "br-0123456789ab", "br-ffffffffffff"],
            ),
            (
                "only Docker's bridge names",
                links(&[
                    ("docker0", None),
                    ("br-0123456789AB", None),
                    ("br-0123456789a", None),
                    ("br-0123456789abc", None),
                    ("br-0123456789ag", None),
                    ("xbr-0123456789ab", None),
                    ("docker1", None),
                    ("br-", None),
                ]),
                vec!["docker0"],
            ),
        ];
        for (what, ls, want) in cases {
            let got: Vec<&str> = stale_docker_links(&ls)
                .iter()
                .map(|l| l.name.as_str())
                .collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn no_input_makes_the_parsers_panic() {
        let link_msg = nlmsg(
            RTM_NEWLINK,
            2,
            1,
            &link_payload(2, "docker0", Some("bridge"), true),
        );
        let route = [rtmsg(2, 0, 254, 1), attr(RTA_OIF, &3u32.to_ne_bytes())].concat();
        let addr = [ifaddrmsg(2, 0, 3), attr(IFA_LOCAL, &[10, 0, 0, 2])].concat();
        // Every truncation, then pseudo-random corruptions (a fixed LCG: reproducible).
        let mut state: u32 = 0x2545_f491;
        let mut rand = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state >> 8
        };
        for bytes in [&link_msg, &route, &addr] {
            for n in 0..=bytes.len() {
                exercise(&bytes[..n]);
            }
            for _ in 0..2000 {
                let mut b = bytes.clone();
                for _ in 0..1 + rand() % 4 {
                    let at = rand() as usize % b.len();
                    b[at] = rand() as u8;
                }
                exercise(&b);
            }
        }
    }

    fn exercise(bytes: &[u8]) {
        let _ = parse_link(bytes);
        let _ = parse_route(bytes);
        let _ = parse_addr(bytes);
        let _ = attributes(bytes);
        let mut reply = Reply::new(1, Some(RTM_NEWLINK));
        let _ = reply.feed(bytes, &mut |p| parse_link(p).map(|_| ()));
    }

    #[test]
    fn requests_are_aligned_and_carry_their_sequence_number() {
        let r = request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 9, &[0; 5]);
        assert_eq!(r.len(), 24);
        assert_eq!(read_u32(&r, 0), Some(24));
        assert_eq!(read_u16(&r, 4), Some(RTM_GETLINK));
        assert_eq!(read_u16(&r, 6), Some(0x301));
        assert_eq!(read_u32(&r, 8), Some(9));
        assert_eq!(read_u32(&r, 12), Some(0));
    }

    #[test]
    fn delete_link_refuses_impossible_indexes() {
        for index in [0, u32::MAX, 1 << 31] {
            let err = delete_link(index).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{index}");
        }
    }
}
