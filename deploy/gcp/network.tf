# A network of our own: it has none of the default network's allow-all rules (SSH and RDP from
# anywhere), so what is reachable is exactly the rules below; everything else is denied.
resource "google_compute_network" "vo" {
  name                    = "${var.name}-net"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.apis]
}

resource "google_compute_subnetwork" "vo" {
  name                     = "${var.name}-subnet"
  network                  = google_compute_network.vo.id
  region                   = local.region
  ip_cidr_range            = "10.42.0.0/24"
  private_ip_google_access = true # the GPU host reaches Google's APIs without a public IP
}

# The GPU host has no public IP; it reaches apt, PyPI, Hugging Face and Ollama through NAT
# (outbound only: nothing from outside can open a connection to it).
resource "google_compute_router" "vo" {
  name    = "${var.name}-router"
  network = google_compute_network.vo.id
  region  = local.region
}

resource "google_compute_router_nat" "vo" {
  name                               = "${var.name}-nat"
  router                             = google_compute_router.vo.name
  region                             = local.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"
  subnetwork {
    name                    = google_compute_subnetwork.vo.self_link
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }
}

# The only public port: HTTPS on the gateway (Caddy; port 80 stays closed, Caddy proves the
# name over TLS-ALPN on 443).
resource "google_compute_firewall" "gateway_https" {
  name                    = "${var.name}-gateway-https"
  network                 = google_compute_network.vo.id
  direction               = "INGRESS"
  source_ranges           = ["0.0.0.0/0"]
  target_service_accounts = [google_service_account.gateway.email]
  allow {
    protocol = "tcp"
    ports    = ["443"]
  }
}

# The GPU host's API port, from the gateway only (matched by the gateway's service account).
resource "google_compute_firewall" "host_api_from_gateway" {
  name                    = "${var.name}-host-api-from-gateway"
  network                 = google_compute_network.vo.id
  direction               = "INGRESS"
  source_service_accounts = [google_service_account.gateway.email]
  target_service_accounts = [google_service_account.host.email]
  allow {
    protocol = "tcp"
    ports    = [tostring(local.api_port)]
  }
}

# SSH to either VM through Identity-Aware Proxy only (gcloud compute ssh --tunnel-through-iap):
# 35.235.240.0/20 is IAP's forwarding range, and IAP checks the caller's IAM first.
resource "google_compute_firewall" "ssh_from_iap" {
  name                    = "${var.name}-ssh-from-iap"
  network                 = google_compute_network.vo.id
  direction               = "INGRESS"
  source_ranges           = ["35.235.240.0/20"]
  target_service_accounts = [google_service_account.gateway.email, google_service_account.host.email]
  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

resource "google_compute_address" "gateway" {
  name         = "${var.name}-gateway-ip"
  region       = local.region
  address_type = "EXTERNAL"
  depends_on   = [google_project_service.apis]
}
