//! The simulated cloud: zones, subnets, images, instances with tags and
//! user data, served over HTTP on loopback; machines that boot, run
//! kubeadm's join discovery for real and start a kubelet; and the `sim`
//! provider that talks to it across the process boundary.
//!
//! (Filled by the cloud work.)
