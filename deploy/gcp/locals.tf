locals {
  region = join("-", slice(split("-", var.zone), 0, 2))

  # One row per GPU shape. usd_per_hour: us-central1 on-demand list prices (machine and GPU
  # together, mid-2025); other regions differ by up to ~30%: see
  # https://cloud.google.com/compute/gpus-pricing and set var.usd_per_hour to yours.
  # quota: the regional quota metric (deploy.sh checks it, with GPUS_ALL_REGIONS).
  gpus = {
    t4 = {
      machine_type = "n1-standard-4" # 4 vCPU, 15 GB
      accelerator  = "nvidia-tesla-t4"
      attach       = true # N1 takes a GPU as a separate accelerator; G2 and A2 come with theirs
      profile      = "t4-16gb"
      disk_gb      = 100 # OS + driver ~12 GB, venv with CUDA torch ~10 GB, Mistral + Whisper ~6 GB
      usd_per_hour = 0.54
      quota        = "NVIDIA_T4_GPUS"
    }
    l4 = {
      machine_type = "g2-standard-8" # 8 vCPU, 32 GB, 1 L4
      accelerator  = "nvidia-l4"
      attach       = false
      profile      = "l4-24gb"
      disk_gb      = 100
      usd_per_hour = 0.85
      quota        = "NVIDIA_L4_GPUS"
    }
    a100-40gb = {
      machine_type = "a2-highgpu-1g" # 12 vCPU, 85 GB, 1 A100 40 GB
      accelerator  = "nvidia-tesla-a100"
      attach       = false
      profile      = "a100-40gb"
      disk_gb      = 200 # + PersonaPlex: its own venv (~8 GB) and weights (~17 GB), Whisper large
      usd_per_hour = 3.67
      quota        = "NVIDIA_A100_GPUS"
    }
    a100-80gb = {
      machine_type = "a2-ultragpu-1g" # 12 vCPU, 170 GB, 1 A100 80 GB
      accelerator  = "nvidia-a100-80gb"
      attach       = false
      profile      = "a100-80gb"
      disk_gb      = 200
      usd_per_hour = 5.07
      quota        = "NVIDIA_A100_80GB_GPUS"
    }
  }
  gpu = local.gpus[var.gpu]

  profile      = var.profile != "" ? var.profile : local.gpu.profile
  host_disk_gb = var.boot_disk_gb > 0 ? var.boot_disk_gb : local.gpu.disk_gb
  # Spot prices move with demand; Google's Spot discount is 60-91%: the estimate takes 65%.
  host_usd_per_hour = var.usd_per_hour > 0 ? var.usd_per_hour : (
    var.spot ? round(local.gpu.usd_per_hour * 35) / 100 : local.gpu.usd_per_hour
  )

  gateway_machine_type = var.gateway_machine_type != "" ? var.gateway_machine_type : (
    var.bridge ? "e2-standard-2" : "e2-small"
  )
  gateway_usd_per_hour = lookup({
    "e2-small"      = 0.0168
    "e2-medium"     = 0.0335
    "e2-standard-2" = 0.0670
    "e2-standard-4" = 0.1340
  }, local.gateway_machine_type, 0.0670)
  gateway_disk_gb = var.bridge ? 30 : 20

  # Ubuntu 24.04 LTS on both VMs: Ubuntu's archive carries the NVIDIA driver as signed,
  # precompiled kernel modules for the GCP kernel (no DKMS build, Secure Boot works), Python 3.12
  # and Caddy. The Deep Learning VM images were the alternative: their driver and CUDA come
  # preinstalled, but they are 50+ GB, their family names change with each CUDA release, and
  # their conda Python is one the project does not need (torch brings its own CUDA runtime).
  image = "ubuntu-os-cloud/ubuntu-2404-lts-amd64"

  host_name      = "${var.name}-gpu-host"
  gateway_name   = "${var.name}-gateway"
  api_port       = 11400
  domain         = var.domain != "" ? var.domain : "${replace(google_compute_address.gateway.address, ".", "-")}.sslip.io"
  gateway_url    = "https://${local.domain}"
  startup        = file("${path.module}/startup.sh")
  source_archive = startswith(var.source_archive, "/") ? var.source_archive : "${path.module}/${var.source_archive}"
}
