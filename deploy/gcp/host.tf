# The GPU host: no public IP (the gateway reaches it over the network above; it goes out through
# NAT). The gateway starts and stops it; Terraform does not hold it up (no desired_status).
resource "google_compute_instance" "host" {
  name                      = local.host_name
  zone                      = var.zone
  machine_type              = local.gpu.machine_type
  allow_stopping_for_update = true
  tags                      = ["${var.name}-gpu-host"]

  boot_disk {
    initialize_params {
      image = local.image
      size  = local.host_disk_gb
      type  = "pd-balanced"
    }
  }

  # N1 takes its GPU as an accelerator; G2 and A2 machine types come with theirs.
  dynamic "guest_accelerator" {
    for_each = local.gpu.attach ? [1] : []
    content {
      type  = local.gpu.accelerator
      count = 1
    }
  }

  network_interface {
    subnetwork = google_compute_subnetwork.vo.id
    # no access_config block: no external IP
  }

  scheduling {
    on_host_maintenance         = "TERMINATE" # a VM with a GPU cannot live-migrate
    automatic_restart           = !var.spot
    preemptible                 = var.spot
    provisioning_model          = var.spot ? "SPOT" : "STANDARD"
    instance_termination_action = var.spot ? "STOP" : null # the gateway restarts a stopped Spot host
  }

  service_account {
    email  = google_service_account.host.email
    scopes = ["cloud-platform"] # what it may do is decided by IAM (secrets.tf, source.tf)
  }

  metadata = {
    startup-script      = local.startup
    enable-oslogin      = "TRUE"
    vo-role             = "host"
    vo-profile          = local.profile
    vo-usd-per-hour     = tostring(local.host_usd_per_hour)
    vo-api-port         = tostring(local.api_port)
    vo-source-bucket    = google_storage_bucket.source.name
    vo-source-object    = google_storage_bucket_object.source.name
    vo-host-key-secret  = google_secret_manager_secret.host_key.secret_id
    vo-hf-token-secret  = var.hf_token_secret
    vo-driver-branch    = var.nvidia_driver_branch
    vo-torch-index-url  = var.torch_index_url
    vo-ollama-version   = var.ollama_version
    vo-personaplex-repo = var.personaplex_repo
  }

  depends_on = [
    google_secret_manager_secret_version.host_key,
    google_secret_manager_secret_iam_member.host_host_key,
    google_secret_manager_secret_iam_member.host_hf_token,
    google_storage_bucket_iam_member.source_readers,
    google_compute_router_nat.vo,
  ]
}
