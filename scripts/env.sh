# Sourced by the scripts: finds the Rust toolchain even under sudo, which resets PATH and HOME.
for d in "${CARGO_HOME:-}/bin" "$HOME/.cargo/bin" /root/.cargo/bin ${SUDO_USER:+"$(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo/bin"}; do
  [ -n "$d" ] && [ -x "$d/cargo" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$d:$PATH" ;; esac
done
export PATH
if ! command -v cargo >/dev/null; then
  echo "nanokube: cargo not found: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
