//! The uplink's MTU and what it means for dockerd (SPEC §7), decided once at boot and
//! by `check`: below 1500, dockerd gets `--mtu` and, on Docker 24 and later,
//! `--default-network-opt` with the same value for new user networks. The flags
//! themselves are written by [`Mtu::flags`] in the launch builder; nested networking's
//! `status` shows the result ([`crate::prepare::network::MtuShown`]).

use std::path::Path;
use std::time::Duration;

use crate::prepare::args::option_values;
use crate::prepare::environment::{self, Version};
use crate::prepare::launch::Mtu;
use crate::sys::netlink;

/// What the uplink's MTU means for dockerd (SPEC §7), decided at boot: below 1500,
/// dockerd gets `--mtu` and, on Docker 24 and later, the same for new user networks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MtuPlan {
    /// The uplink's device and MTU, when there is a default route.
    pub uplink: Option<(String, u32)>,
    pub mtu: Option<Mtu>,
    /// Why nothing (more) is passed, for the log and `status`.
    pub note: Option<String>,
}

impl MtuPlan {
    /// Decides from the uplink (netlink) and, only when the MTU is low, dockerd's
    /// version (`dockerd --version`, bounded: a boot-time step before the loop).
    pub fn decide(user_args: &[String], dockerd: Option<&Path>) -> MtuPlan {
        let uplink = match netlink::uplink_mtu() {
            Ok(u) => u,
            Err(e) => {
                return MtuPlan {
                    note: Some(format!("the uplink's MTU could not be read: {e}")),
                    ..MtuPlan::default()
                }
            }
        };
        let Some((_, value)) = uplink.clone().filter(|(_, m)| *m < 1500) else {
            return MtuPlan {
                uplink,
                ..MtuPlan::default()
            };
        };
        // The version matters only for the network option, unless the user set it.
        let opt_given = option_values(user_args, &["--default-network-opt"])
            .iter()
            .any(|v| v.contains("com.docker.network.driver.mtu"));
        if opt_given {
            return MtuPlan {
                uplink,
                mtu: Some(Mtu {
                    value,
                    network_opt: false,
                }),
                note: None,
            };
        }
        let version = dockerd.map(|d| {
            environment::version_output(d, Duration::from_secs(5))
                .map(|text| Version::from_version_output(&text))
        });
        let (network_opt, note) = match version {
            Some(Ok(Some(v))) if v >= Version::new(24, 0, 0) => {
                (true, None)
            }
            Some(Ok(Some(v))) => (
                false,
                Some(format!(
                    "dockerd {}.{}.{} has no --default-network-opt (Docker 24+): new user networks keep 1500; give them -o com.docker.network.driver.mtu={value}",
                    v.major, v.minor, v.patch
                )),
            ),
            Some(Ok(None)) | None => (
                false,
                Some("dockerd's version is unknown: only the default bridge gets the MTU".into()),
            ),
            Some(Err(e)) => (
                false,
                Some(format!("{e}: only the default bridge gets the MTU")),
            ),
        };
        MtuPlan {
            uplink,
            mtu: Some(Mtu { value, network_opt }),
            note,
        }
    }

    /// The flags dockerd gets for it.
    pub fn flags(&self, user_args: &[String]) -> Vec<String> {
        self.mtu.map(|m| m.flags(user_args)).unwrap_or_default()
    }
}
