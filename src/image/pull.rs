//! pull
#[derive(Debug, Default, Clone)]
pub struct PullOptions {
    pub registries: super::config::RegistriesConfig,
    pub progress: bool,
}
pub async fn pull(
    _d: &std::path::Path,
    _r: &str,
    _o: &PullOptions,
) -> anyhow::Result<super::ImageRecord> {
    anyhow::bail!("todo")
}
