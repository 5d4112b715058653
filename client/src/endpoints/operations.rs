use reqwest::StatusCode;
use serde_json::Value;

use crate::{Client, Error, Readiness};

impl Client {
    /// `GET /readyz`: ready (200) or not (503), with the node's report either way.
    pub async fn readyz(&self) -> Result<Readiness, Error> {
        let answer = self.get("/readyz").send().await?;
        let body = answer.json();
        match answer.status {
            StatusCode::OK => Ok(Readiness {
                ready: true,
                report: body["data"].clone(),
            }),
            StatusCode::SERVICE_UNAVAILABLE => Ok(Readiness {
                ready: false,
                report: body["errors"].clone(),
            }),
            status => Err(Error::Unexpected {
                status,
                body: answer.text(),
            }),
        }
    }

    /// The sockets the node has open (from `/readyz`, ready or not).
    pub async fn socket_count(&self) -> Result<u64, Error> {
        let readiness = self.readyz().await?;
        readiness.sockets().ok_or_else(|| Error::Unexpected {
            status: StatusCode::OK,
            body: readiness.report.to_string(),
        })
    }

    /// `GET /api/v1/schema`: the node's OpenAPI document.
    pub async fn openapi(&self) -> Result<Value, Error> {
        let answer = self.get("/api/v1/schema").send().await?;
        if answer.status != StatusCode::OK {
            return Err(Error::Unexpected {
                status: answer.status,
                body: answer.text(),
            });
        }
        Ok(answer.json())
    }
}
