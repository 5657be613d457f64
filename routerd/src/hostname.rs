//! The system's host name, which routerd sets from the config it applies when asked
//! to (`routerd run --set-hostname`, as init runs it on the appliance). Without the
//! flag it is never touched: the namespace lab shares the machine's UTS namespace.

use config::Config;

/// Sets the host name to `config`'s name when it differs, logging the change.
pub fn follow(config: &Config) {
    let wanted = config.system_hostname();
    let current = nix::unistd::gethostname().map(|n| n.to_string_lossy().into_owned());
    if current.as_deref().ok() == Some(wanted) {
        return;
    }
    match nix::unistd::sethostname(wanted) {
        Ok(()) => match current {
            Ok(old) => tracing::info!("host name set to {wanted} (was {old})"),
            Err(_) => tracing::info!("host name set to {wanted}"),
        },
        Err(e) => tracing::error!("cannot set the host name to {wanted}: {}", e.desc()),
    }
}
