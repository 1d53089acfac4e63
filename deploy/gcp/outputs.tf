locals {
  hours_per_month = 730 # 365 * 24 / 12
  # Billed all month whatever the host does: the gateway VM, both boot disks (pd-balanced,
  # $0.10/GB-month), the gateway's static IPv4 ($0.005/h) and three secrets ($0.06 each).
  fixed_usd_per_month = (
    local.gateway_usd_per_hour * local.hours_per_month
    + 0.10 * (local.host_disk_gb + local.gateway_disk_gb)
    + 0.005 * local.hours_per_month
    + 0.06 * 3
  )
  # Billed while the host runs: the host, and Cloud NAT's per-VM hour ($0.0014). NAT's data
  # processing ($0.045/GB) adds about $1 once, for the first boot's downloads (~20 GB).
  host_running_usd_per_hour = local.host_usd_per_hour + 0.0014
  monthly = {
    "24/7"    = local.fixed_usd_per_month + local.host_running_usd_per_hour * local.hours_per_month
    "8 h/day" = local.fixed_usd_per_month + local.host_running_usd_per_hour * 8 * 365 / 12
    "4 h/day" = local.fixed_usd_per_month + local.host_running_usd_per_hour * 4 * 365 / 12
  }
}

output "gateway_url" {
  description = "Where the app connects (base_url = <this>/v1). Caddy gets its certificate within a minute of the first boot."
  value       = local.gateway_url
}

output "gateway_ip" {
  description = "The gateway's static IP: point your domain's A record here (var.domain)."
  value       = google_compute_address.gateway.address
}

output "api_key_command" {
  description = "Prints the clients' API key (the app's Authorization: Bearer)."
  value       = "gcloud secrets versions access latest --secret=${google_secret_manager_secret.api_key.secret_id} --project=${var.project}"
}

output "ssh_commands" {
  description = "Shells on the VMs, through IAP (no public SSH port)."
  value = {
    gateway = "gcloud compute ssh ${local.gateway_name} --zone=${var.zone} --project=${var.project} --tunnel-through-iap"
    host    = "gcloud compute ssh ${local.host_name} --zone=${var.zone} --project=${var.project} --tunnel-through-iap"
  }
}

output "gpu_host" {
  description = "The GPU host: machine, GPU, profile, disk and the price the costs use."
  value = {
    name         = local.host_name
    zone         = var.zone
    machine_type = local.gpu.machine_type
    gpu          = var.gpu
    spot         = var.spot
    profile      = local.profile
    disk_gb      = local.host_disk_gb
    usd_per_hour = local.host_usd_per_hour
    quota_metric = var.spot ? "PREEMPTIBLE_${local.gpu.quota}" : local.gpu.quota
  }
}

output "monthly_cost_usd" {
  description = "Estimated monthly bill with the GPU host up 24/7, 8 h/day or 4 h/day (the gateway always on; list prices, before credits and tax)."
  value       = { for k, v in local.monthly : k => format("%.2f", v) }
}
