//! Static tables: software products, operating systems, device groups.
//!
//! Names follow TVM's lowercase CPE-style tokens (`microsoft`/`windows_11`, `red_hat`/`kernel`); file
//! and registry paths are JSON array literals (already escaped) because rows copy them verbatim.

/// How a product numbers its versions; `v` grows by one per upgrade.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scheme {
    /// Windows cumulative updates: `10.0.{build}.{base + 61·v}`.
    Windows { build: u32, base: u32 },
    /// Chromium-based browsers: `{major}.0.{build}.{patch}`.
    Chromium { major: u32, build: u32 },
    /// `{major}.{minor + v/10}.{patch + v%10}`.
    Semver { major: u32, minor: u32, patch: u32 },
    /// Office click-to-run: `16.0.{build}.{rev}`.
    Office,
    /// `1.8.0_{401 + v}`.
    Jre,
    /// Ubuntu kernels: `5.15.0-{91 + v}-generic`.
    UbuntuKernel,
    /// RHEL kernels: `0:5.14.0-{362 + 8v}.{n}.1.el9_4`.
    RhelKernel,
    /// macOS / Safari: `{major}.{v/6 % 7}.{v % 6}`.
    Apple { major: u32 },
}

impl Scheme {
    pub(crate) fn version(self, v: u64) -> String {
        match self {
            Scheme::Windows { build, base } => format!("10.0.{build}.{}", u64::from(base) + 61 * v),
            Scheme::Chromium { major, build } => {
                format!(
                    "{}.0.{}.{}",
                    u64::from(major) + v / 3,
                    u64::from(build) + 70 * (v / 3),
                    40 + (v % 3) * 27
                )
            }
            Scheme::Semver {
                major,
                minor,
                patch,
            } => {
                format!(
                    "{major}.{}.{}",
                    u64::from(minor) + v / 10,
                    u64::from(patch) + v % 10
                )
            }
            Scheme::Office => format!("16.0.{}.{}", 17_328 + 100 * v, 20_000 + (v * 37) % 900),
            Scheme::Jre => format!("1.8.0_{}", 401 + v),
            Scheme::UbuntuKernel => format!("5.15.0-{}-generic", 91 + v),
            Scheme::RhelKernel => format!("0:5.14.0-{}.{}.1.el9_4", 362 + 8 * v, 1 + (v * 13) % 40),
            Scheme::Apple { major } => format!("{major}.{}.{}", (v / 6) % 7, v % 6),
        }
    }
}

/// Where the fix for a product's CVEs comes from: decides `recommendedSecurityUpdate*` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpdateStyle {
    /// Monthly Patch Tuesday KBs (`February 2025 Security Updates`, `5051987`, catalog URL).
    MsPatch,
    /// Third-party apps: mostly nulls, sometimes a bare number (`193220`).
    ThirdParty,
    /// RHSA errata.
    RedHat,
    /// Ubuntu security notices.
    Ubuntu,
    /// Apple updates (names, no ids).
    Apple,
}

pub(crate) struct Product {
    pub(crate) vendor: &'static str,
    pub(crate) name: &'static str,
    pub(crate) display: &'static str,
    /// Catalogue size at 100 findings per device (scaled up for more).
    pub(crate) cves: u32,
    /// Share of a device's finding budget.
    pub(crate) weight: u32,
    /// Mean ticks between upgrades.
    pub(crate) period: u32,
    pub(crate) scheme: Scheme,
    pub(crate) update: UpdateStyle,
    /// (diskPaths, registryPaths) on Windows; `None` is an explicit JSON null.
    pub(crate) win: (Option<&'static str>, Option<&'static str>),
    /// (diskPaths, registryPaths) on Linux and macOS.
    pub(crate) unix: (Option<&'static str>, Option<&'static str>),
}

const NONE2: (Option<&str>, Option<&str>) = (None, None);
const EMPTY2: (Option<&str>, Option<&str>) = (Some("[]"), Some("[]"));

macro_rules! product {
    ($v:expr, $n:expr, $d:expr, $c:expr, $w:expr, $p:expr, $s:expr, $u:expr, $win:expr, $unix:expr) => {
        Product {
            vendor: $v,
            name: $n,
            display: $d,
            cves: $c,
            weight: $w,
            period: $p,
            scheme: $s,
            update: $u,
            win: $win,
            unix: $unix,
        }
    };
}

pub(crate) const WIN11: usize = 0;
pub(crate) const WIN10: usize = 1;
pub(crate) const SRV2019: usize = 2;
pub(crate) const SRV2022: usize = 3;
pub(crate) const UBUNTU_KERNEL: usize = 21;
pub(crate) const RHEL_KERNEL: usize = 22;
pub(crate) const MACOS: usize = 27;

#[rustfmt::skip]
pub(crate) static PRODUCTS: [Product; 33] = [
    product!("microsoft", "windows_11", "Windows 11", 600, 60, 120, Scheme::Windows { build: 22631, base: 3000 }, UpdateStyle::MsPatch, EMPTY2, NONE2),
    product!("microsoft", "windows_10", "Windows 10", 700, 60, 120, Scheme::Windows { build: 19045, base: 3000 }, UpdateStyle::MsPatch, (None, Some("[]")), NONE2),
    product!("microsoft", "windows_server_2019", "Windows Server 2019", 650, 60, 120, Scheme::Windows { build: 17763, base: 5000 }, UpdateStyle::MsPatch, (None, Some("[]")), NONE2),
    product!("microsoft", "windows_server_2022", "Windows Server 2022", 550, 60, 120, Scheme::Windows { build: 20348, base: 2000 }, UpdateStyle::MsPatch, (None, Some("[]")), NONE2),
    product!("microsoft", "edge_chromium", "Microsoft Edge", 350, 8, 48, Scheme::Chromium { major: 128, build: 2739 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe"]"#), Some(r#"["HKEY_LOCAL_MACHINE\\SOFTWARE\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\Microsoft Edge"]"#)), (Some(r#"["/Applications/Microsoft Edge.app"]"#), Some("[]"))),
    product!("google", "chrome", "Google Chrome", 400, 9, 48, Scheme::Chromium { major: 128, build: 6613 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe"]"#), Some(r#"["HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\Google Chrome"]"#)), (Some(r#"["/Applications/Google Chrome.app"]"#), Some("[]"))),
    product!("mozilla", "firefox", "Mozilla Firefox", 300, 6, 64, Scheme::Semver { major: 128, minor: 0, patch: 0 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\Mozilla Firefox\\firefox.exe"]"#), Some(r#"["HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\Mozilla Firefox (x64 en-US)"]"#)), (Some(r#"["/Applications/Firefox.app"]"#), Some("[]"))),
    product!("microsoft", "office", "Microsoft 365 Apps", 250, 7, 120, Scheme::Office, UpdateStyle::MsPatch, (Some(r#"["C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE"]"#), Some(r#"["HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\O365ProPlusRetail - en-us"]"#)), (Some(r#"["/Applications/Microsoft Word.app"]"#), Some("[]"))),
    product!("microsoft", "teams", "Microsoft Teams", 40, 1, 96, Scheme::Semver { major: 24, minor: 100, patch: 0 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\WindowsApps\\MSTeams_x64__8wekyb3d8bbwe\\ms-teams.exe"]"#), Some("[]")), (Some("[]"), Some("[]"))),
    product!("microsoft", ".net_framework", ".NET Framework", 120, 3, 240, Scheme::Semver { major: 4, minor: 8, patch: 0 }, UpdateStyle::MsPatch, (Some("[]"), Some(r#"["HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\NET Framework Setup\\NDP\\v4\\Full"]"#)), EMPTY2),
    product!("adobe", "acrobat_reader_dc", "Adobe Acrobat Reader", 200, 4, 96, Scheme::Semver { major: 24, minor: 2, patch: 20 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\Adobe\\Acrobat DC\\Acrobat\\Acrobat.exe"]"#), Some(r#"["HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\{ AC76BA86-1033-1033-7760-BC15014EA700}"]"#)), EMPTY2),
    product!("zoom", "zoom", "Zoom Workplace", 60, 2, 96, Scheme::Semver { major: 6, minor: 1, patch: 0 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\Zoom\\bin\\Zoom.exe"]"#), Some("[]")), (Some(r#"["/Applications/zoom.us.app"]"#), Some("[]"))),
    product!("oracle", "jre", "Java Runtime Environment", 150, 3, 160, Scheme::Jre, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\Java\\jre-1.8\\bin\\java.exe"]"#), Some("[]")), EMPTY2),
    product!("igor_pavlov", "7-zip", "7-Zip", 15, 1, 400, Scheme::Semver { major: 23, minor: 1, patch: 0 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\7-Zip\\7z.exe"]"#), Some(r#"["HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\7-Zip"]"#)), EMPTY2),
    product!("notepad-plus-plus", "notepad++", "Notepad++", 20, 1, 200, Scheme::Semver { major: 8, minor: 6, patch: 0 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\Notepad++\\notepad++.exe"]"#), Some("[]")), EMPTY2),
    product!("videolan", "vlc_media_player", "VLC media player", 40, 1, 240, Scheme::Semver { major: 3, minor: 0, patch: 18 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\VideoLAN\\VLC\\vlc.exe"]"#), Some("[]")), EMPTY2),
    product!("openssl", "openssl", "OpenSSL", 90, 3, 240, Scheme::Semver { major: 3, minor: 0, patch: 13 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\Common Files\\SSL\\libssl-3-x64.dll"]"#), Some("[]")), (Some(r#"["/usr/lib/x86_64-linux-gnu/libssl.so.3"]"#), Some("[]"))),
    product!("git-scm", "git", "Git", 40, 1, 160, Scheme::Semver { major: 2, minor: 45, patch: 1 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\Git\\cmd\\git.exe"]"#), Some("[]")), (Some(r#"["/usr/bin/git"]"#), Some("[]"))),
    product!("python", "python", "Python", 80, 2, 240, Scheme::Semver { major: 3, minor: 10, patch: 12 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\Python310\\python.exe"]"#), Some("[]")), (Some(r#"["/usr/bin/python3"]"#), Some("[]"))),
    product!("microsoft", "visual_studio_code", "Visual Studio Code", 30, 1, 64, Scheme::Semver { major: 1, minor: 90, patch: 0 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\Microsoft VS Code\\Code.exe"]"#), Some("[]")), (Some(r#"["/Applications/Visual Studio Code.app"]"#), Some("[]"))),
    product!("microsoft", "sql_server_2019", "SQL Server 2019", 180, 5, 240, Scheme::Semver { major: 15, minor: 0, patch: 4 }, UpdateStyle::MsPatch, (Some(r#"["C:\\Program Files\\Microsoft SQL Server\\MSSQL15.MSSQLSERVER\\MSSQL\\Binn\\sqlservr.exe"]"#), Some("[]")), EMPTY2),
    product!("linux", "linux_kernel", "Linux kernel", 700, 45, 120, Scheme::UbuntuKernel, UpdateStyle::Ubuntu, EMPTY2, (Some(r#"["/boot/vmlinuz"]"#), Some("[]"))),
    product!("red_hat", "kernel", "Red Hat kernel", 700, 45, 120, Scheme::RhelKernel, UpdateStyle::RedHat, EMPTY2, (Some(r#"["/boot/vmlinuz"]"#), Some("[]"))),
    product!("gnu", "glibc", "GNU C Library", 60, 4, 240, Scheme::Semver { major: 2, minor: 35, patch: 0 }, UpdateStyle::Ubuntu, EMPTY2, (Some(r#"["/usr/lib/x86_64-linux-gnu/libc.so.6"]"#), Some("[]"))),
    product!("openbsd", "openssh", "OpenSSH", 50, 3, 240, Scheme::Semver { major: 8, minor: 9, patch: 1 }, UpdateStyle::Ubuntu, EMPTY2, (Some(r#"["/usr/sbin/sshd"]"#), Some("[]"))),
    product!("sudo_project", "sudo", "sudo", 20, 1, 400, Scheme::Semver { major: 1, minor: 9, patch: 9 }, UpdateStyle::Ubuntu, EMPTY2, (Some(r#"["/usr/bin/sudo"]"#), Some("[]"))),
    product!("haxx", "curl", "curl", 90, 3, 160, Scheme::Semver { major: 8, minor: 5, patch: 0 }, UpdateStyle::Ubuntu, EMPTY2, (Some(r#"["/usr/bin/curl"]"#), Some("[]"))),
    product!("apple", "macos", "macOS", 500, 55, 120, Scheme::Apple { major: 14 }, UpdateStyle::Apple, NONE2, (None, Some("[]"))),
    product!("apple", "safari", "Safari", 150, 6, 96, Scheme::Apple { major: 17 }, UpdateStyle::Apple, NONE2, (Some(r#"["/Applications/Safari.app"]"#), Some("[]"))),
    // Software TVM inventories but knows no CVE for: these become the `cveId: null` rows.
    product!("microsoft", "onedrive", "OneDrive", 0, 0, 160, Scheme::Semver { major: 24, minor: 180, patch: 0 }, UpdateStyle::ThirdParty, (Some(r#"["C:\\Program Files\\Microsoft OneDrive\\OneDrive.exe"]"#), Some("[]")), EMPTY2),
    product!("microsoft", "windows_terminal", "Windows Terminal", 0, 0, 160, Scheme::Semver { major: 1, minor: 20, patch: 0 }, UpdateStyle::ThirdParty, (Some("[]"), Some("[]")), EMPTY2),
    product!("gnu", "coreutils", "GNU coreutils", 0, 0, 400, Scheme::Semver { major: 8, minor: 32, patch: 0 }, UpdateStyle::Ubuntu, EMPTY2, (Some(r#"["/usr/bin/ls"]"#), Some("[]"))),
    product!("microsoft", "company_portal", "Company Portal", 0, 0, 160, Scheme::Semver { major: 5, minor: 2404, patch: 0 }, UpdateStyle::ThirdParty, EMPTY2, (Some(r#"["/Applications/Company Portal.app"]"#), Some("[]"))),
];

/// Operating systems of onboarded devices, as `/api/machines` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Platform {
    Windows11,
    Windows10,
    WindowsServer2019,
    WindowsServer2022,
    Ubuntu,
    RedHatEnterpriseLinux,
    MacOs,
}

/// Device classes drive names, RBAC groups and a few enums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Workstation,
    Server,
    Linux,
    Mac,
}

#[derive(Debug)]
pub(crate) struct PlatformInfo {
    pub(crate) platform: Platform,
    pub(crate) machine_name: &'static str,
    /// RHEL and Ubuntu collapse to `Linux` in exports (OBS).
    pub(crate) export_name: &'static str,
    pub(crate) version: &'static str,
    pub(crate) os_build: Option<u32>,
    pub(crate) class: Class,
    /// The product that is the operating system itself (its version is the export `osVersion`).
    pub(crate) os_product: usize,
    /// `osVersion` of export rows when it does not follow the OS product.
    pub(crate) export_os_version: Option<&'static str>,
    pub(crate) software: &'static [(usize, f64)],
}

const WIN_APPS: [(usize, f64); 17] = [
    (4, 1.0),
    (5, 0.7),
    (6, 0.25),
    (7, 0.8),
    (8, 0.6),
    (9, 0.9),
    (10, 0.5),
    (11, 0.3),
    (12, 0.15),
    (13, 0.3),
    (14, 0.2),
    (15, 0.15),
    (16, 0.3),
    (17, 0.15),
    (18, 0.15),
    (19, 0.15),
    (29, 0.9),
];

const fn with_os<const N: usize>(os: usize, apps: [(usize, f64); N]) -> [(usize, f64); N] {
    let mut out = apps;
    out[0] = (os, 1.0);
    out
}

static WIN11_SW: [(usize, f64); 19] = {
    let mut out = [(0usize, 0.0f64); 19];
    let mut i = 0;
    while i < 17 {
        out[i + 1] = WIN_APPS[i];
        i += 1;
    }
    out[18] = (30, 0.4);
    with_os(WIN11, out)
};
static WIN10_SW: [(usize, f64); 19] = {
    let mut out = WIN11_SW;
    out[0] = (WIN10, 1.0);
    out
};
static SRV2019_SW: [(usize, f64); 10] = [
    (SRV2019, 1.0),
    (4, 0.8),
    (5, 0.3),
    (9, 1.0),
    (12, 0.3),
    (13, 0.3),
    (16, 0.5),
    (20, 0.4),
    (18, 0.2),
    (30, 0.3),
];
static SRV2022_SW: [(usize, f64); 10] = {
    let mut out = SRV2019_SW;
    out[0] = (SRV2022, 1.0);
    out
};
static UBUNTU_SW: [(usize, f64); 9] = [
    (UBUNTU_KERNEL, 1.0),
    (23, 1.0),
    (24, 1.0),
    (25, 1.0),
    (26, 0.9),
    (16, 1.0),
    (18, 0.8),
    (17, 0.4),
    (31, 1.0),
];
static RHEL_SW: [(usize, f64); 8] = [
    (RHEL_KERNEL, 1.0),
    (23, 1.0),
    (24, 1.0),
    (25, 1.0),
    (26, 0.9),
    (16, 1.0),
    (18, 0.7),
    (31, 1.0),
];
static MAC_SW: [(usize, f64); 8] = [
    (MACOS, 1.0),
    (28, 1.0),
    (5, 0.7),
    (6, 0.2),
    (7, 0.6),
    (11, 0.4),
    (19, 0.3),
    (32, 0.6),
];

#[rustfmt::skip]
pub(crate) static PLATFORMS: [(PlatformInfo, u32); 7] = [
    (PlatformInfo { platform: Platform::Windows11, machine_name: "Windows11", export_name: "Windows11", version: "23H2", os_build: Some(22631), class: Class::Workstation, os_product: WIN11, export_os_version: None, software: &WIN11_SW }, 35),
    (PlatformInfo { platform: Platform::Windows10, machine_name: "Windows10", export_name: "Windows10", version: "22H2", os_build: Some(19045), class: Class::Workstation, os_product: WIN10, export_os_version: None, software: &WIN10_SW }, 25),
    (PlatformInfo { platform: Platform::WindowsServer2019, machine_name: "WindowsServer2019", export_name: "WindowsServer2019", version: "1809", os_build: Some(17763), class: Class::Server, os_product: SRV2019, export_os_version: None, software: &SRV2019_SW }, 8),
    (PlatformInfo { platform: Platform::WindowsServer2022, machine_name: "WindowsServer2022", export_name: "WindowsServer2022", version: "21H2", os_build: Some(20348), class: Class::Server, os_product: SRV2022, export_os_version: None, software: &SRV2022_SW }, 10),
    (PlatformInfo { platform: Platform::Ubuntu, machine_name: "Ubuntu", export_name: "Linux", version: "22.04", os_build: None, class: Class::Linux, os_product: UBUNTU_KERNEL, export_os_version: Some("ubuntu_linux_22.04"), software: &UBUNTU_SW }, 8),
    (PlatformInfo { platform: Platform::RedHatEnterpriseLinux, machine_name: "RedHatEnterpriseLinux", export_name: "Linux", version: "9.4", os_build: None, class: Class::Linux, os_product: RHEL_KERNEL, export_os_version: Some("enterprise_linux_9.4"), software: &RHEL_SW }, 6),
    (PlatformInfo { platform: Platform::MacOs, machine_name: "macOS", export_name: "macOS", version: "14.6", os_build: None, class: Class::Mac, os_product: MACOS, export_os_version: None, software: &MAC_SW }, 8),
];

/// A device group (RBAC). Group 0 is "no group": `rbacGroupName` null in `/api/machines`,
/// `"Unassigned"` in exports.
pub(crate) struct Group {
    pub(crate) id: u32,
    pub(crate) name: Option<&'static str>,
}

impl Group {
    pub(crate) fn export_name(&self) -> &'static str {
        self.name.unwrap_or("Unassigned")
    }
}

pub(crate) static GROUPS: [Group; 7] = [
    Group { id: 0, name: None },
    Group {
        id: 2,
        name: Some("Engineering"),
    },
    Group {
        id: 42,
        name: Some("Executives"),
    },
    Group {
        id: 140,
        name: Some("Finance Workstations"),
    },
    Group {
        id: 311,
        name: Some("Servers - Production"),
    },
    Group {
        id: 312,
        name: Some("Servers - Test"),
    },
    Group {
        id: 5678,
        name: Some("Linux Fleet"),
    },
];

/// Which groups (indexes into [`GROUPS`]) devices of a class land in, and how often.
pub(crate) fn group_weights(class: Class) -> &'static [(usize, u32)] {
    match class {
        Class::Workstation => &[(0, 30), (1, 35), (2, 5), (3, 30)],
        Class::Server => &[(0, 20), (4, 50), (5, 30)],
        Class::Linux => &[(0, 25), (6, 50), (4, 25)],
        Class::Mac => &[(0, 40), (1, 50), (2, 10)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_consistent() {
        for (p, _) in &PLATFORMS {
            assert_eq!(p.software[0].0, p.os_product, "{}", p.machine_name);
            for (sw, prob) in p.software {
                assert!(*sw < PRODUCTS.len());
                assert!((0.0..=1.0).contains(prob));
            }
        }
        for p in &PRODUCTS {
            for s in [p.win.0, p.win.1, p.unix.0, p.unix.1].into_iter().flatten() {
                let v: Vec<String> = serde_json::from_str(s).unwrap();
                assert!(v.len() <= 1, "{s}");
            }
            let v = p.scheme.version(3);
            assert!(!v.contains('"') && !v.contains('\\'));
        }
    }
}
