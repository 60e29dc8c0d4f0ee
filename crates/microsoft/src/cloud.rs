//! Microsoft cloud presets (<https://learn.microsoft.com/en-us/defender-endpoint/gov>) and the hosts a bearer token may be sent to.
//!
//! GCC is the trap: its Entra is the commercial one, but its Defender for Endpoint API host is `.us`.
//! GCC High and DoD use `login.microsoftonline.us`. Microsoft documents no Defender for Endpoint API
//! for China (21Vianet), so an Endpoint integration there fails with a clear error instead of sending
//! credentials somewhere that cannot work.

use std::fmt;
use std::net::IpAddr;

use rampart_model::{Cloud, Product};
use url::Url;

/// The static facts of one cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloudPreset {
    pub cloud: Cloud,
    /// Entra authority host.
    pub login: &'static str,
    /// Defender for Endpoint API host, when Microsoft documents one for this cloud.
    pub mde_api: Option<&'static str>,
    /// The scope to request for Defender for Endpoint (`<audience>/.default`).
    pub mde_scope: Option<&'static str>,
    /// Other documented API hosts of the same cloud that accept the same token (older hosts,
    /// regional hosts). A `nextLink` may point at them.
    pub mde_alias_hosts: &'static [&'static str],
    /// Azure Resource Manager (Defender for Cloud).
    pub arm: &'static str,
    pub arm_scope: &'static str,
}

const COMMERCIAL: CloudPreset = CloudPreset {
    cloud: Cloud::Commercial,
    login: "https://login.microsoftonline.com",
    mde_api: Some("https://api.security.microsoft.com"),
    // WindowsDefenderATP's identifier, even when calling api.security.microsoft.com: the identifier
    // `https://api.security.microsoft.com` belongs to a different app (Microsoft 365 Defender).
    mde_scope: Some("https://api.securitycenter.microsoft.com/.default"),
    mde_alias_hosts: &[
        "api.securitycenter.microsoft.com",
        "api.securitycenter.windows.com",
        "us.api.security.microsoft.com",
        "eu.api.security.microsoft.com",
        "uk.api.security.microsoft.com",
        "au.api.security.microsoft.com",
        "swa.api.security.microsoft.com",
        "ina.api.security.microsoft.com",
        "api-us.securitycenter.microsoft.com",
        "api-eu.securitycenter.microsoft.com",
        "api-uk.securitycenter.microsoft.com",
    ],
    arm: "https://management.azure.com",
    arm_scope: "https://management.azure.com/.default",
};

const GCC: CloudPreset = CloudPreset {
    cloud: Cloud::Gcc,
    login: "https://login.microsoftonline.com",
    mde_api: Some("https://api-gcc.securitycenter.microsoft.us"),
    // UNCONFIRMED in Microsoft Learn (msticpy's pattern); overridable with `scope`.
    mde_scope: Some("https://api-gcc.securitycenter.microsoft.us/.default"),
    mde_alias_hosts: &["api-gcc.security.microsoft.us"],
    // GCC subscriptions live in commercial Azure.
    arm: "https://management.azure.com",
    arm_scope: "https://management.azure.com/.default",
};

const GCC_HIGH: CloudPreset = CloudPreset {
    cloud: Cloud::GccHigh,
    login: "https://login.microsoftonline.us",
    mde_api: Some("https://api-gov.securitycenter.microsoft.us"),
    mde_scope: Some("https://api-gov.securitycenter.microsoft.us/.default"),
    mde_alias_hosts: &["api-gov.security.microsoft.us"],
    arm: "https://management.usgovcloudapi.net",
    // The token audience is `management.core.usgovcloudapi.net`, not the ARM host (<https://learn.microsoft.com/en-us/azure/azure-government/documentation-government-developer-guide>,
    // fact 10): the host and the audience differ in the sovereign clouds.
    arm_scope: "https://management.core.usgovcloudapi.net/.default",
};

const DOD: CloudPreset = CloudPreset {
    cloud: Cloud::Dod,
    ..GCC_HIGH
};

const CHINA: CloudPreset = CloudPreset {
    cloud: Cloud::China,
    login: "https://login.partner.microsoftonline.cn",
    mde_api: None,
    mde_scope: None,
    mde_alias_hosts: &[],
    arm: "https://management.chinacloudapi.cn",
    arm_scope: "https://management.core.chinacloudapi.cn/.default",
};

/// The preset of a cloud.
pub fn preset(cloud: Cloud) -> &'static CloudPreset {
    match cloud {
        Cloud::Commercial => &COMMERCIAL,
        Cloud::Gcc => &GCC,
        Cloud::GccHigh => &GCC_HIGH,
        Cloud::Dod => &DOD,
        Cloud::China => &CHINA,
    }
}

/// User-supplied replacements for a preset: the emulator, a proxy, a regional host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Replaces the Entra authority host (`https://login.microsoftonline.com`).
    pub login_url: Option<String>,
    /// Replaces the API host. When set, it is the **only** host the token is sent to.
    pub api_url: Option<String>,
    /// Replaces the token scope (`<audience>/.default`).
    pub scope: Option<String>,
    /// Allow plain `http://` to hosts other than loopback. Off by default so that a typo can never
    /// send a client secret over an unencrypted connection; the emulator on 127.0.0.1 needs no flag.
    pub allow_insecure_http: bool,
}

/// Why the endpoints of an integration cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    #[error(
        "Microsoft documents no {product} API for the {cloud} cloud, so Rampart cannot read it there. \
         Choose the cloud your tenant is in (commercial, gcc, gcc-high, dod), or give --api-url and --login-url if you know a working host"
    )]
    ProductUnavailable {
        product: &'static str,
        cloud: &'static str,
    },
    #[error("the {which} '{shown}' is not a valid URL: {reason}")]
    InvalidUrl {
        which: &'static str,
        shown: String,
        reason: String,
    },
    #[error(
        "the {which} '{shown}' uses plain http to a host that is not this machine: credentials and tokens would travel unencrypted. Use https"
    )]
    InsecureUrl { which: &'static str, shown: String },
}

/// The resolved endpoints of an integration (either product; `mde` and `arm` resolve them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub cloud: Cloud,
    /// Authority, e.g. `https://login.microsoftonline.com` (the tenant is appended per request).
    pub login: Url,
    /// API base, e.g. `https://api.security.microsoft.com` (paths `api/...` are joined to it).
    pub api: Url,
    /// Token scope.
    pub scope: String,
    /// Where the bearer token may go.
    pub allowed: AllowedHosts,
}

impl Endpoints {
    /// Defender for Endpoint's endpoints in `cloud`, with `overrides` applied.
    pub fn mde(cloud: Cloud, overrides: &Overrides) -> Result<Endpoints, CloudError> {
        let p = preset(cloud);
        let unavailable = || CloudError::ProductUnavailable {
            product: "Defender for Endpoint",
            cloud: cloud.label(),
        };
        // China: without both overrides there is nothing to talk to.
        let api_str = match (&overrides.api_url, p.mde_api) {
            (Some(u), _) => u.as_str(),
            (None, Some(u)) => u,
            (None, None) => return Err(unavailable()),
        };
        let scope = match (&overrides.scope, p.mde_scope) {
            (Some(s), _) => s.clone(),
            (None, Some(s)) => s.to_owned(),
            (None, None) => return Err(unavailable()),
        };
        let login = parse_base(
            "login URL",
            overrides.login_url.as_deref().unwrap_or(p.login),
            overrides.allow_insecure_http,
        )?;
        let api = parse_base("API URL", api_str, overrides.allow_insecure_http)?;
        let allowed = if overrides.api_url.is_some() {
            AllowedHosts::only(&api)
        } else {
            AllowedHosts::with_aliases(&api, p.mde_alias_hosts)
        };
        Ok(Endpoints {
            cloud,
            login,
            api,
            scope,
            allowed,
        })
    }

    /// Azure Resource Manager's endpoints in `cloud` (Defender for Cloud), with `overrides` applied.
    pub fn arm(cloud: Cloud, overrides: &Overrides) -> Result<Endpoints, CloudError> {
        let p = preset(cloud);
        let login = parse_base(
            "login URL",
            overrides.login_url.as_deref().unwrap_or(p.login),
            overrides.allow_insecure_http,
        )?;
        let api = parse_base(
            "API URL",
            overrides.api_url.as_deref().unwrap_or(p.arm),
            overrides.allow_insecure_http,
        )?;
        Ok(Endpoints {
            cloud,
            login,
            allowed: AllowedHosts::only(&api),
            api,
            scope: overrides
                .scope
                .clone()
                .unwrap_or_else(|| p.arm_scope.to_owned()),
        })
    }
}

/// The product Rampart can read in a cloud, for the portal's cloud picker.
pub fn supports(cloud: Cloud, product: Product) -> bool {
    match product {
        Product::Endpoint => preset(cloud).mde_api.is_some(),
        Product::Cloud => true,
    }
}

/// Checks a login or API URL override as the clients will use it, so that a URL they would refuse
/// (plain `http://` to a host other than this machine, a user name or password in it, a query) is
/// refused when it is entered, on every path, rather than at the first sync.
pub fn check_override_url(which: &'static str, s: &str) -> Result<(), CloudError> {
    parse_base(which, s, false).map(drop)
}

fn parse_base(which: &'static str, s: &str, allow_insecure: bool) -> Result<Url, CloudError> {
    let shown: String = s.chars().take(120).collect();
    let mut url = Url::parse(s.trim()).map_err(|e| CloudError::InvalidUrl {
        which,
        shown: shown.clone(),
        reason: e.to_string(),
    })?;
    let invalid = |reason: &str| CloudError::InvalidUrl {
        which,
        shown: shown.clone(),
        reason: reason.to_owned(),
    };
    if url.host_str().is_none() {
        return Err(invalid("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must not contain a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not contain '?' or '#'"));
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure || is_loopback(&url) => {}
        "http" => return Err(CloudError::InsecureUrl { which, shown }),
        _ => return Err(invalid("use an https:// URL")),
    }
    // A base ends in '/', so that `join("api/machines")` keeps any path prefix of a proxy.
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// The origins (scheme, host, port) a bearer token may be sent to.
#[derive(Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    origins: Vec<url::Origin>,
}

impl AllowedHosts {
    /// Only the origin of `base`.
    pub fn only(base: &Url) -> AllowedHosts {
        AllowedHosts {
            origins: vec![base.origin()],
        }
    }

    fn with_aliases(base: &Url, aliases: &[&str]) -> AllowedHosts {
        let mut origins = vec![base.origin()];
        for host in aliases {
            if let Ok(u) = Url::parse(&format!("https://{host}/")) {
                origins.push(u.origin());
            }
        }
        AllowedHosts { origins }
    }

    /// Whether a request to `url` may carry the bearer token.
    pub fn allows(&self, url: &Url) -> bool {
        let o = url.origin();
        o.is_tuple() && self.origins.contains(&o)
    }
}

impl fmt::Debug for AllowedHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.origins.iter().map(|o| o.ascii_serialization()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(cloud: Cloud) -> Endpoints {
        Endpoints::mde(cloud, &Overrides::default()).unwrap()
    }

    #[test]
    fn presets_follow_the_reference_matrix() {
        let c = resolve(Cloud::Commercial);
        assert_eq!(c.login.as_str(), "https://login.microsoftonline.com/");
        assert_eq!(c.api.as_str(), "https://api.security.microsoft.com/");
        assert_eq!(c.scope, "https://api.securitycenter.microsoft.com/.default");

        let gcc = resolve(Cloud::Gcc);
        assert_eq!(
            gcc.login.as_str(),
            "https://login.microsoftonline.com/",
            "GCC uses commercial Entra"
        );
        assert_eq!(
            gcc.api.as_str(),
            "https://api-gcc.securitycenter.microsoft.us/"
        );

        for cloud in [Cloud::GccHigh, Cloud::Dod] {
            let e = resolve(cloud);
            assert_eq!(e.login.as_str(), "https://login.microsoftonline.us/");
            assert_eq!(
                e.api.as_str(),
                "https://api-gov.securitycenter.microsoft.us/"
            );
            assert_eq!(
                e.scope,
                "https://api-gov.securitycenter.microsoft.us/.default"
            );
        }

        assert_eq!(
            preset(Cloud::China).login,
            "https://login.partner.microsoftonline.cn"
        );
        assert_eq!(
            preset(Cloud::Commercial).arm_scope,
            "https://management.azure.com/.default"
        );
        assert_eq!(
            preset(Cloud::GccHigh).arm_scope,
            "https://management.core.usgovcloudapi.net/.default"
        );
        assert_eq!(
            preset(Cloud::Dod).arm,
            "https://management.usgovcloudapi.net"
        );
        assert_eq!(
            preset(Cloud::China).arm_scope,
            "https://management.core.chinacloudapi.cn/.default"
        );
    }

    #[test]
    fn china_endpoint_is_a_clear_error_but_cloud_works() {
        let err = Endpoints::mde(Cloud::China, &Overrides::default()).unwrap_err();
        assert!(matches!(err, CloudError::ProductUnavailable { .. }));
        assert!(err.to_string().contains("China"), "{err}");
        assert!(!supports(Cloud::China, Product::Endpoint));
        let arm = Endpoints::arm(Cloud::China, &Overrides::default()).unwrap();
        assert_eq!(arm.api.as_str(), "https://management.chinacloudapi.cn/");
    }

    #[test]
    fn overrides_replace_hosts_and_narrow_the_allowed_set() {
        let o = Overrides {
            login_url: Some("http://127.0.0.1:8080".into()),
            api_url: Some("http://127.0.0.1:8080/proxy".into()),
            ..Default::default()
        };
        let e = Endpoints::mde(Cloud::Commercial, &o).unwrap();
        assert_eq!(e.api.as_str(), "http://127.0.0.1:8080/proxy/");
        assert_eq!(
            e.api.join("api/machines").unwrap().as_str(),
            "http://127.0.0.1:8080/proxy/api/machines"
        );
        assert!(
            e.allowed
                .allows(&Url::parse("http://127.0.0.1:8080/api/x").unwrap())
        );
        assert!(
            !e.allowed
                .allows(&Url::parse("http://127.0.0.1:8081/api/x").unwrap())
        );
        assert!(
            !e.allowed
                .allows(&Url::parse("https://api.security.microsoft.com/api").unwrap())
        );
    }

    #[test]
    fn preset_allows_documented_aliases_and_nothing_else() {
        let e = resolve(Cloud::Commercial);
        let ok = |u: &str| e.allowed.allows(&Url::parse(u).unwrap());
        assert!(ok(
            "https://api.security.microsoft.com/api/machines?$skip=1"
        ));
        assert!(ok("https://api.securitycenter.microsoft.com/api/machines"));
        assert!(ok("https://eu.api.security.microsoft.com/api/machines"));
        assert!(
            !ok("http://api.security.microsoft.com/api/machines"),
            "no downgrade to http"
        );
        assert!(!ok("https://api.security.microsoft.com:8443/api"));
        assert!(!ok("https://wpatdadi-eus-stg.cloudapp.net/api/machines"));
        assert!(!ok("https://api.security.microsoft.com.evil.example/api"));
        assert!(
            !ok("https://api-gov.securitycenter.microsoft.us/api"),
            "another cloud's host"
        );
    }

    #[test]
    fn plain_http_is_refused_except_to_this_machine() {
        let o = |u: &str| Overrides {
            api_url: Some(u.into()),
            ..Default::default()
        };
        assert!(Endpoints::mde(Cloud::Commercial, &o("http://localhost:9")).is_ok());
        assert!(Endpoints::mde(Cloud::Commercial, &o("http://[::1]:9")).is_ok());
        let err = Endpoints::mde(Cloud::Commercial, &o("http://10.1.2.3")).unwrap_err();
        assert!(matches!(err, CloudError::InsecureUrl { .. }));
        let mut insecure = o("http://10.1.2.3");
        insecure.allow_insecure_http = true;
        assert!(Endpoints::mde(Cloud::Commercial, &insecure).is_ok());
        for bad in [
            "ftp://x",
            "not a url",
            "https://user:pw@host",
            "https://host/?a=1",
        ] {
            assert!(Endpoints::mde(Cloud::Commercial, &o(bad)).is_err(), "{bad}");
        }
    }
}
