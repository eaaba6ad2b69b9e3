//! The JSON documents of an image: indexes (manifest lists), manifests and configs, in both the
//! OCI and the Docker schema 2 media types, which share one shape. Only the fields nanokube uses
//! are modelled; unknown fields are ignored so newer documents still parse.

use super::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// What a registry is asked to return for a manifest request, best first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Errors of manifest handling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The document is not JSON of the expected shape.
    #[error("{what} {digest} is not valid JSON: {cause}")]
    Json {
        what: &'static str,
        digest: String,
        cause: serde_json::Error,
    },
    /// The document is a Docker schema 1 manifest, which registries stopped serving years ago.
    #[error("manifest {0} uses Docker schema 1, which is not supported")]
    Schema1(String),
    /// The index lists no manifest for this host's OS and architecture.
    #[error("image index {digest} has no manifest for {platform} (it has: {available})")]
    NoPlatform {
        digest: String,
        platform: String,
        available: String,
    },
    /// A layer's media type is neither a tar nor a compressed tar (for example a foreign layer or an artifact).
    #[error("layer {digest} has unsupported media type {media_type:?}")]
    LayerType { digest: String, media_type: String },
    /// The config lists a different number of layers than the manifest.
    #[error("image config {config} lists {diff_ids} layers but manifest {manifest} has {layers}")]
    LayerCount {
        config: String,
        manifest: String,
        diff_ids: usize,
        layers: usize,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An image config file: what the kubelet needs to start the image's process, and the layers'
/// uncompressed digests.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<ImageConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// The process defaults an image carries (its `config` object), as the kubelet uses them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Keys like `80/tcp`; the values are empty objects in every image format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// An index or a manifest: a tag may name either.
#[derive(Debug, Clone)]
pub enum Document {
    Index(Index),
    Manifest(Manifest),
}

impl Document {
    /// Parses a manifest-or-index, deciding by its media type (or, when absent, by its shape).
    pub fn parse(bytes: &[u8], digest: &Digest) -> Result<Document, Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            #[serde(default)]
            schema_version: u32,
            #[serde(default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Option<serde_json::Value>,
        }
        let json_err = |cause| Error::Json {
            what: "manifest",
            digest: digest.to_string(),
            cause,
        };
        let probe: Probe = serde_json::from_slice(bytes).map_err(json_err)?;
        if probe.schema_version == 1 {
            return Err(Error::Schema1(digest.to_string()));
        }
        let is_index = match probe.media_type.as_deref() {
            Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
            Some(_) => false,
            None => probe.manifests.is_some(),
        };
        if is_index {
            Ok(Document::Index(
                serde_json::from_slice(bytes).map_err(json_err)?,
            ))
        } else {
            Ok(Document::Manifest(
                serde_json::from_slice(bytes).map_err(json_err)?,
            ))
        }
    }
}

impl ConfigFile {
    pub fn parse(bytes: &[u8], digest: &Digest) -> Result<ConfigFile, Error> {
        serde_json::from_slice(bytes).map_err(|cause| Error::Json {
            what: "image config",
            digest: digest.to_string(),
            cause,
        })
    }
}

/// The platform nanokube runs images for: linux and the architecture it was built for, named
/// as Go (and so every image index) names it.
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    Platform {
        architecture: architecture.to_string(),
        os: "linux".to_string(),
        variant: None,
    }
}

impl Index {
    /// The manifest for `platform`. Entries without a platform (attestations, artifacts) are
    /// never chosen; among matches the first wins, as registries list the preferred variant first.
    pub fn select(&self, digest: &Digest, platform: &Platform) -> Result<&Descriptor, Error> {
        self.manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
            })
            .ok_or_else(|| Error::NoPlatform {
                digest: digest.to_string(),
                platform: format!("{}/{}", platform.os, platform.architecture),
                available: self
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref())
                    .map(|p| format!("{}/{}", p.os, p.architecture))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// How a layer blob is compressed. The blob's magic bytes decide when unpacking; the media type
/// is only checked to refuse things that are not layers at all.
pub fn check_layer_media_type(layer: &Descriptor) -> Result<(), Error> {
    let mt = layer.media_type.as_str();
    let known = [
        OCI_LAYER_TAR,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        DOCKER_LAYER_GZIP,
        DOCKER_LAYER_TAR,
        "application/vnd.docker.image.rootfs.diff.tar.zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    ];
    if known.contains(&mt) {
        Ok(())
    } else {
        Err(Error::LayerType {
            digest: layer.digest.to_string(),
            media_type: mt.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_host_platform_and_skips_attestations() {
        let d = |c: &str| Digest::of(c.as_bytes());
        let entry = |arch: &str, os: &str, c: &str| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: d(c),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: None,
            }),
            annotations: Default::default(),
        };
        let index = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                entry("unknown", "unknown", "att"),
                entry("arm64", "linux", "arm"),
                entry("amd64", "linux", "amd"),
            ],
        };
        let amd64 = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(index.select(&d("i"), &amd64).unwrap().digest, d("amd"));
        let s390 = Platform {
            architecture: "s390x".into(),
            ..amd64
        };
        let err = index.select(&d("i"), &s390).unwrap_err().to_string();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/arm64"),
            "{err}"
        );
    }
}
