"""Gunicorn's logger with secrets masked: ``--logger-class config.access_log.RedactingLogger``.

The access log writes each request line, query string and referrer as they came, and API
clients may put their token in the query string (Distelli's documented ``?apiToken=``,
GitLab's ``?private_token=``). Every line gunicorn writes, access and error log alike, passes
through ``pipelines.redaction.RedactSecretsFilter`` first.
"""

from gunicorn.glogging import Logger

from pipelines.redaction import RedactSecretsFilter


class RedactingLogger(Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)  # (re)creates the handlers, so the filter goes on each time
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not any(isinstance(f, RedactSecretsFilter) for f in handler.filters):
                    handler.addFilter(RedactSecretsFilter())
