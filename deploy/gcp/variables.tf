# What deploy.sh asks for (it writes them into deploy.auto.tfvars.json, so that a later
# `terraform apply` or destroy.sh uses the same values). Everything else has a default.

variable "project" {
  description = "The GCP project id."
  type        = string
}

variable "zone" {
  description = "Zone of both VMs. The GPU type must exist there: gcloud compute accelerator-types list --filter=zone:ZONE"
  type        = string
  default     = "us-central1-a"
}

variable "name" {
  description = "Prefix of every resource's name (two deployments in one project need two prefixes)."
  type        = string
  default     = "vo"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,14}$", var.name))
    error_message = "name: lower-case letters, digits and dashes, at most 15, starting with a letter."
  }
}

variable "gpu" {
  description = "The GPU host's shape: t4 (n1-standard-4 + 1 T4), l4 (g2-standard-8), a100-40gb (a2-highgpu-1g) or a100-80gb (a2-ultragpu-1g)."
  type        = string
  default     = "t4"
  validation {
    condition     = contains(["t4", "l4", "a100-40gb", "a100-80gb"], var.gpu)
    error_message = "gpu: one of t4, l4, a100-40gb, a100-80gb."
  }
}

variable "spot" {
  description = "Run the GPU host as a Spot VM (60-91% cheaper; Google may stop it at any time: the gateway then sees it stopped and starts it again on the next request)."
  type        = bool
  default     = false
}

variable "profile" {
  description = "The orchestrator profile on the GPU host (config/profiles/NAME.toml); empty: the one made for the GPU."
  type        = string
  default     = ""
}

variable "boot_disk_gb" {
  description = "The GPU host's boot disk; 0: sized for the profile's weights (100 GB, 200 GB for the A100 profiles with PersonaPlex)."
  type        = number
  default     = 0
}

variable "domain" {
  description = "The gateway's DNS name (an A record to the gateway_ip output). Empty: <ip-with-dashes>.sslip.io, a name that resolves to the IP without any DNS setup."
  type        = string
  default     = ""
}

variable "bridge" {
  description = "Run the cold-start bridge (CPU engines answering while the host wakes) on the gateway VM; it needs 8 GB, so the VM becomes an e2-standard-2."
  type        = bool
  default     = false
}

variable "gateway_machine_type" {
  description = "The gateway VM; empty: e2-small, or e2-standard-2 with the bridge."
  type        = string
  default     = ""
}

variable "stop_after_s" {
  description = "The gateway stops the GPU host after this many idle seconds."
  type        = number
  default     = 600
}

variable "hf_token_secret" {
  description = "A Secret Manager secret (in this project) holding a Hugging Face token, for gated weights (PersonaPlex). deploy.sh makes it from $HF_TOKEN. Empty: none."
  type        = string
  default     = ""
}

variable "source_archive" {
  description = "The project as a .tar.gz (deploy.sh makes it with git archive); uploaded, and unpacked by both VMs at boot."
  type        = string
  default     = "build/voice-orchestrator.tar.gz"
}

variable "nvidia_driver_branch" {
  description = "The NVIDIA driver branch the GPU host installs from Ubuntu's archive (nvidia:BRANCH-server). 580 supports the T4, L4 and A100 and CUDA 12 and 13."
  type        = string
  default     = "580"
}

variable "torch_index_url" {
  description = "A wheel index for torch on the GPU host (e.g. https://download.pytorch.org/whl/cu128). Empty: PyPI, whose Linux x86_64 torch is a CUDA build."
  type        = string
  default     = ""
}

variable "ollama_version" {
  description = "The Ollama release the GPU host installs (e.g. 0.12.3); empty: the latest."
  type        = string
  default     = ""
}

variable "personaplex_repo" {
  description = "Where the GPU host clones PersonaPlex's source from (the A100 profiles run it)."
  type        = string
  default     = "https://github.com/NVIDIA/personaplex.git"
}

variable "usd_per_hour" {
  description = "The GPU host's price per hour for the cost outputs and the orchestrator's ledger; 0: the list price below (on-demand or the Spot estimate)."
  type        = number
  default     = 0
}
