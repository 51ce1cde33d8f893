"""Signed webhooks: endpoints, deliveries stored before they are sent, retries."""
