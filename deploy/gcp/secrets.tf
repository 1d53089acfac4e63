# The keys live in Secret Manager; each VM reads its own at boot (startup.sh) and writes them
# into a root-only environment file for its systemd unit. They are also in Terraform's state:
# keep terraform.tfstate private (it is git-ignored; a team puts it in a locked GCS bucket).

# The clients' key (the app's): on the gateway only.
resource "random_password" "api_key" {
  length  = 43
  special = false
}

resource "google_secret_manager_secret" "api_key" {
  secret_id = "${var.name}-api-key"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "api_key" {
  secret      = google_secret_manager_secret.api_key.id
  secret_data = random_password.api_key.result
}

# The gateway's own key towards the host (VO_GATEWAY_HOST_KEY there, VO_GATEWAY_KEYS here).
resource "random_password" "host_key" {
  length  = 43
  special = false
}

resource "google_secret_manager_secret" "host_key" {
  secret_id = "${var.name}-gateway-host-key"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "host_key" {
  secret      = google_secret_manager_secret.host_key.id
  secret_data = random_password.host_key.result
}

resource "google_secret_manager_secret_iam_member" "gateway_api_key" {
  secret_id = google_secret_manager_secret.api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.gateway.email}"
}

resource "google_secret_manager_secret_iam_member" "gateway_host_key" {
  secret_id = google_secret_manager_secret.host_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.gateway.email}"
}

resource "google_secret_manager_secret_iam_member" "host_host_key" {
  secret_id = google_secret_manager_secret.host_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.host.email}"
}

# The Hugging Face token is made by deploy.sh (from $HF_TOKEN, never through Terraform's
# state); only its reader is granted here.
resource "google_secret_manager_secret_iam_member" "host_hf_token" {
  count     = var.hf_token_secret != "" ? 1 : 0
  secret_id = "projects/${var.project}/secrets/${var.hf_token_secret}"
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.host.email}"
}
