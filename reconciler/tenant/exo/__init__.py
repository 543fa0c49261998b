"""The admin API client: msal auth, InvokeCommand, paging, retries, batching."""
