resource "google_project_service" "apis" {
  for_each = toset([
    "compute.googleapis.com",
    "iam.googleapis.com",
    "iap.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
  service            = each.value
  disable_on_destroy = false # other things in the project may use them
}

# Each VM has its own identity with nothing but what it needs.
resource "google_service_account" "gateway" {
  account_id   = "${var.name}-gateway"
  display_name = "voice-orchestrator gateway: starts and stops the GPU host"
  depends_on   = [google_project_service.apis]
}

resource "google_service_account" "host" {
  account_id   = "${var.name}-gpu-host"
  display_name = "voice-orchestrator GPU host"
  depends_on   = [google_project_service.apis]
}

# What the gateway's gcp provider calls (orchestrator/gateway/providers/gcp.py): instances.get,
# instances.start and instances.stop on the host, and zoneOperations.wait (permission
# compute.zoneOperations.get) to wait for its own start and stop. Nothing else.
resource "random_id" "role" {
  byte_length = 3 # a deleted custom role keeps its id for 7 days: a new deployment needs another
}

resource "google_project_iam_custom_role" "host_power" {
  role_id     = "${replace(var.name, "-", "_")}_host_power_${random_id.role.hex}"
  title       = "voice-orchestrator: start and stop the GPU host"
  description = "Read, start and stop one instance and wait for the operation (the gateway)."
  permissions = [
    "compute.instances.get",
    "compute.instances.start",
    "compute.instances.stop",
    "compute.zoneOperations.get",
  ]
}

# On the GPU instance itself: get, start and stop work there and on no other instance.
resource "google_compute_instance_iam_member" "gateway_host_power" {
  zone          = var.zone
  instance_name = google_compute_instance.host.name
  role          = google_project_iam_custom_role.host_power.id
  member        = "serviceAccount:${google_service_account.gateway.email}"
}

# Operations are not children of an instance, so reading the start's operation needs the role
# on the project; the condition leaves every instance out, so of this role only
# compute.zoneOperations.get takes effect there.
resource "google_project_iam_member" "gateway_operations" {
  project = var.project
  role    = google_project_iam_custom_role.host_power.id
  member  = "serviceAccount:${google_service_account.gateway.email}"
  condition {
    title       = "not-instances"
    description = "instance permissions only through the binding on the GPU instance"
    expression  = "resource.type != \"compute.googleapis.com/Instance\""
  }
}
