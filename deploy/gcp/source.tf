# The project's code, as deploy.sh packed it, in a private bucket both VMs read at boot. Its
# name carries its checksum, so a new upload is a new object and each VM reinstalls on its next
# boot (the gateway restarts the host often; restart the gateway with `sudo reboot` via IAP).
resource "google_storage_bucket" "source" {
  name                        = "${var.project}-${var.name}-deploy"
  location                    = local.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  depends_on                  = [google_project_service.apis]
}

resource "google_storage_bucket_object" "source" {
  name   = "source/voice-orchestrator-${filemd5(local.source_archive)}.tar.gz"
  bucket = google_storage_bucket.source.name
  source = local.source_archive
}

resource "google_storage_bucket_iam_member" "source_readers" {
  for_each = {
    gateway = google_service_account.gateway.email
    host    = google_service_account.host.email
  }
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${each.value}"
}
