#!/usr/bin/env bash
# Accelerator check in a few minutes: installs jaxcls with the extra that matches this machine,
# then prints train img/s and MFU for resnet50 and efficientnet_b0 (bf16, batch 256, synthetic data),
# timm (torch.compile + bf16 autocast + channels-last) beside them when torch and timm are installed,
# and one short real training run (tools/device_check.py; results in ./device_check/).
#
#   bash tools/device_check.sh [cuda|tpu|cpu] [device_check.py flags, e.g. --batch=128]
#
# The extra is detected when not given: cuda where nvidia-smi lists a GPU, tpu on a Cloud TPU VM
# (/dev/accel* or /dev/vfio), cpu otherwise. JAXCLS_SKIP_INSTALL=1 uses the installed packages as
# they are (a machine without network); a failed install is reported and the check goes on with
# what is installed.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

extra=${1:-auto}
if [[ "$extra" == cuda || "$extra" == tpu || "$extra" == cpu || "$extra" == auto ]]; then
  shift || true
else
  extra=auto
fi
if [[ "$extra" == auto ]]; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    extra=cuda
  elif ls /dev/accel* >/dev/null 2>&1 || ls /dev/vfio/[0-9]* >/dev/null 2>&1; then
    extra=tpu
  else
    extra=cpu
  fi
fi
echo "device_check: platform extra '$extra'"

if [[ "${JAXCLS_SKIP_INSTALL:-0}" != 1 ]]; then
  spec="."
  [[ "$extra" != cpu ]] && spec=".[$extra]"
  start=$(date +%s)
  if "$PYTHON" -m pip install -q --retries 1 --timeout 15 -e "$spec"; then
    echo "device_check: installed jaxcls$([[ $spec != . ]] && echo "[$extra]") in $(( $(date +%s) - start )) s"
  else
    echo "device_check: 'pip install -e $spec' failed; going on with the installed packages"
  fi
fi

"$PYTHON" - <<'PY' || exit 1
import jax
print(f"device_check: jax {jax.__version__}, backend {jax.default_backend()}, {jax.devices()}")
PY

start=$(date +%s)
"$PYTHON" tools/device_check.py "$@"
rc=$?
echo "device_check: finished in $(( $(date +%s) - start )) s (exit $rc)"
exit $rc
