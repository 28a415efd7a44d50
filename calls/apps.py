from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"
    verbose_name = "Calls"

    def ready(self) -> None:
        from calls.recorder import register_metrics

        register_metrics()  # the recorder's counts on /metrics
