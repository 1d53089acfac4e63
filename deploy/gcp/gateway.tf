# The gateway: a small always-on VM with the only public address, TLS by Caddy on 443.
resource "google_compute_instance" "gateway" {
  name                      = local.gateway_name
  zone                      = var.zone
  machine_type              = local.gateway_machine_type
  allow_stopping_for_update = true
  tags                      = ["${var.name}-gateway"]

  boot_disk {
    initialize_params {
      image = local.image
      size  = local.gateway_disk_gb
      type  = "pd-balanced"
    }
  }

  network_interface {
    subnetwork = google_compute_subnetwork.vo.id
    access_config {
      nat_ip = google_compute_address.gateway.address
    }
  }

  service_account {
    email  = google_service_account.gateway.email
    scopes = ["cloud-platform"] # narrowed by IAM to the custom role in iam.tf and its secrets
  }

  metadata = {
    startup-script     = local.startup
    enable-oslogin     = "TRUE"
    vo-role            = "gateway"
    vo-domain          = local.domain
    vo-host-name       = google_compute_instance.host.name
    vo-host-zone       = var.zone
    vo-host-ip         = google_compute_instance.host.network_interface[0].network_ip
    vo-api-port        = tostring(local.api_port)
    vo-stop-after-s    = tostring(var.stop_after_s)
    vo-bridge          = var.bridge ? "true" : "false"
    vo-usd-per-hour    = tostring(local.gateway_usd_per_hour)
    vo-source-bucket   = google_storage_bucket.source.name
    vo-source-object   = google_storage_bucket_object.source.name
    vo-api-key-secret  = google_secret_manager_secret.api_key.secret_id
    vo-host-key-secret = google_secret_manager_secret.host_key.secret_id
    vo-torch-index-url = "https://download.pytorch.org/whl/cpu" # no GPU here: the small wheel
  }

  depends_on = [
    google_secret_manager_secret_version.api_key,
    google_secret_manager_secret_version.host_key,
    google_secret_manager_secret_iam_member.gateway_api_key,
    google_secret_manager_secret_iam_member.gateway_host_key,
    google_storage_bucket_iam_member.source_readers,
    google_compute_instance_iam_member.gateway_host_power,
    google_project_iam_member.gateway_operations,
  ]
}
