//! Vulnerability entities (`/api/vulnerabilities`) and `machinesVulnerabilities` rows.

use crate::hash::{below, mix};
use crate::records::{MachineVulnerability, Vulnerability};
use crate::time::Ts;

use super::World;
use super::catalog::{PRODUCTS, UpdateStyle};
use super::rows::RowData;

impl World {
    pub(crate) fn vulnerability(&self, index: usize, tick: i64, exposed: u32) -> Vulnerability {
        let cve = &self.catalogue.cves[index];
        let attrs = cve.attrs(tick);
        let extras = cve.extras(tick, attrs, &self.clock);
        let product = &PRODUCTS[cve.product];
        let h = mix(cve.hash, 0xDE5);
        let flaw = [
            "memory corruption",
            "use-after-free",
            "improper input validation",
            "privilege escalation",
            "information disclosure",
        ][below(h, 5) as usize];
        let first_detected = (exposed > 0).then(|| {
            let floor = self.clock.at(0) - 30 * 86_400;
            Ts::at(cve.published.max(floor) + below(mix(h, 1), 86_400) as i64).to_chrono()
        });
        Vulnerability {
            id: cve.id.clone(),
            name: cve.id.clone(),
            description: format!(
                "Summary: A {flaw} flaw in {} could allow an attacker to compromise an affected device. \
                 Impact: Successful exploitation may affect the confidentiality, integrity or availability of the device. \
                 Remediation: Apply the latest patches and updates provided by {}.",
                product.display, product.vendor
            ),
            severity: attrs.severity().to_owned(),
            cvss_v3: Some(attrs.cvss_f64()),
            cvss_vector: Some(extras.cvss_vector.to_owned()),
            exposed_machines: u64::from(exposed),
            published_on: Ts::at(cve.published).to_chrono(),
            updated_on: extras.updated_on.to_chrono(),
            first_detected,
            patch_first_available: extras.patch_first_available.map(Ts::to_chrono),
            public_exploit: attrs.exploit >= 1,
            exploit_verified: attrs.exploit >= 2,
            exploit_in_kit: attrs.exploit >= 3,
            exploit_types: extras.exploit_types,
            exploit_uris: extras.exploit_uris,
            cve_supportability: extras.supportability.to_owned(),
            tags: Vec::new(),
            epss: Some(cve.epss),
            status: "RemediationRequired".to_owned(),
        }
    }

    /// The catalogue index of a CVE id (ids encode their index; checked against the catalogue).
    pub(crate) fn cve_index(&self, id: &str) -> Option<usize> {
        let number = id.rsplit('-').next()?.parse::<usize>().ok()?;
        let index = number.checked_sub(10_000)?;
        let cve = self.catalogue.cves.get(index)?;
        cve.id.eq_ignore_ascii_case(id).then_some(index)
    }
}

impl RowData<'_> {
    /// The `machinesVulnerabilities` record of a row with a CVE.
    pub(crate) fn machine_vulnerability(&self) -> Option<MachineVulnerability> {
        let (cve, attrs) = self.cve?;
        let kb = (self.product.update == UpdateStyle::MsPatch)
            .then(|| cve.rsu_id.clone())
            .flatten();
        Some(MachineVulnerability {
            id: format!(
                "{}-_-{}-_-{}-_-{}-_-{}-_-{}",
                self.names.id,
                cve.id,
                self.product.vendor,
                self.product.name,
                self.version,
                kb.as_deref().unwrap_or("")
            ),
            cve_id: cve.id.clone(),
            machine_id: self.names.id.clone(),
            fixing_kb_id: kb,
            product_name: self.product.name.to_owned(),
            product_vendor: self.product.vendor.to_owned(),
            product_version: self.version.to_owned(),
            severity: attrs.severity().to_owned(),
        })
    }
}
