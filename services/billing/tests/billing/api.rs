//! Every route: tenant isolation, bad input (always a 4xx in one shape,
//! never a 5xx), and the OpenAPI document.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vigil_core::ProviderId;
use vigil_proto::v1;
use vigil_testkit::wait_until;

use crate::support::{Billing, PATIENCE, Stack, TOKEN, assert_error, local};

/// A concrete request for each route template.
fn fill(path: &str, provider: &str) -> String {
    path.replace("{provider_id}", provider)
        .replace("{period}", "2025-02")
        .replace("{token_id}", "0195a5a5a5a5a5a5a5a5a5a5a5a5a5a5")
}

fn body_for(method: &str) -> Option<Value> {
    (method == "PUT").then(|| {
        json!({
            "currency": "EUR",
            "per_authentication": "0.05",
            "per_enabled_user_month": "1",
            "per_sms_segment": "0.01",
            "per_voice_minute": "0.02",
        })
    })
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap_or(Method::GET)
}

async fn known(stack: &Stack, billing: &Billing, provider: &str) -> anyhow::Result<()> {
    wait_until(PATIENCE, "provider to be known", || async {
        let (status, body) = stack.usage(billing, provider, &[]).await?;
        anyhow::Ok((status == StatusCode::OK && body["usage_model"].is_string()).then_some(()))
    })
    .await
}

#[tokio::test]
async fn provider_tokens_read_their_own_provider_and_nothing_else() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start().await?;
        let billing = Billing::start(&stack).await?;
        let (a, b) = (ProviderId::new().to_string(), ProviderId::new().to_string());
        stack.create_provider(&a, v1::UsageModel::PerAuthentication).await?;
        stack.create_provider(&b, v1::UsageModel::PerEnabledUser).await?;
        known(&stack, &billing, &a).await?;
        known(&stack, &billing, &b).await?;
        let (_, token_a) = stack.issue_token(&billing, &a).await?;
        let (b_token_id, token_b) = stack.issue_token(&billing, &b).await?;
        assert!(token_a.starts_with("vbt_"));

        let db = stack.db().await?;
        let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT secret_sha256 FROM api_tokens")
            .fetch_all(&db)
            .await?;
        assert_eq!(stored.len(), 2);
        assert!(stored.iter().all(|digest| digest.len() == 32), "only hashes are stored");

        let routes = vigil_billing::routes();
        let provider_routes: Vec<_> = routes.iter().filter(|(_, p)| p.contains("{provider_id}")).collect();
        assert!(provider_routes.len() >= 12, "{provider_routes:?}");
        for (name, template) in &provider_routes {
            let admin = matches!(*name, "PUT" | "POST" | "DELETE");
            for (token, own, other) in [(&token_a, &a, &b), (&token_b, &b, &a)] {
                // The other provider: refused, whatever exists there.
                let response = stack
                    .call(
                        &billing.base,
                        method(name),
                        &fill(template, other),
                        &[],
                        Some(token),
                        body_for(name).as_ref(),
                    )
                    .await?;
                let code = if admin { "operator_only" } else { "forbidden" };
                assert_error(&response, StatusCode::FORBIDDEN, code);
                // A provider that does not exist: refused the same way.
                let unknown = ProviderId::new().to_string();
                let response = stack
                    .call(
                        &billing.base,
                        method(name),
                        &fill(template, &unknown),
                        &[],
                        Some(token),
                        body_for(name).as_ref(),
                    )
                    .await?;
                assert_error(&response, StatusCode::FORBIDDEN, code);
                // Its own provider: read routes answer, admin routes are refused.
                let (status, body) = stack
                    .call(
                        &billing.base,
                        method(name),
                        &fill(template, own),
                        &[],
                        Some(token),
                        body_for(name).as_ref(),
                    )
                    .await?;
                if admin {
                    assert_error(&(status, body), StatusCode::FORBIDDEN, "operator_only");
                } else {
                    assert!(
                        status == StatusCode::OK
                            || ["statement_not_found", "rates_not_set"]
                                .contains(&body["error"]["code"].as_str().unwrap_or("")),
                        "{name} {template}: {status} {body}"
                    );
                }
            }
        }

        // The operator token reads and administers every provider.
        for (name, template) in &provider_routes {
            let (status, body) = stack
                .call(
                    &billing.base,
                    method(name),
                    &fill(template, &b),
                    &[],
                    Some(TOKEN),
                    body_for(name).as_ref(),
                )
                .await?;
            assert!(
                status.as_u16() < 500 && status != StatusCode::FORBIDDEN,
                "{name} {template}: {status} {body}"
            );
        }
        // Rates are now set for B (by the PUT above): A's token still cannot read them.
        let response = stack
            .get(&billing, &format!("/v1/providers/{b}/rates"), &[], Some(&token_a))
            .await?;
        assert_error(&response, StatusCode::FORBIDDEN, "forbidden");
        let (status, rates) = stack
            .get(&billing, &format!("/v1/providers/{b}/rates"), &[], Some(&token_b))
            .await?;
        assert_eq!((status, &rates["per_authentication"]), (StatusCode::OK, &json!("0.05")));

        // A revoked token reads nothing.
        let (status, _) = stack
            .call(
                &billing.base,
                Method::DELETE,
                &format!("/v1/providers/{b}/tokens/{b_token_id}"),
                &[],
                Some(TOKEN),
                None,
            )
            .await?;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let response = stack.usage(&billing, &b, &[]).await;
        assert_eq!(response?.0, StatusCode::OK, "the operator still reads B");
        let revoked = stack
            .get(&billing, &format!("/v1/providers/{b}/usage"), &[], Some(&token_b))
            .await?;
        assert_error(&revoked, StatusCode::UNAUTHORIZED, "unauthorized");
        // A token with a right id and a wrong secret is no token.
        let forged = format!("{}{}", &token_a[..token_a.len() - 4], "0000");
        let response = stack
            .get(&billing, &format!("/v1/providers/{a}/usage"), &[], Some(&forged))
            .await?;
        assert_error(&response, StatusCode::UNAUTHORIZED, "unauthorized");
        billing.stop().await
    })
    .await
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_on_every_route() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start().await?;
        let billing = Billing::start(&stack).await?;
        let a = ProviderId::new().to_string();
        stack.create_provider(&a, v1::UsageModel::PerAuthentication).await?;
        known(&stack, &billing, &a).await?;
        let p = format!("/v1/providers/{a}");
        let get = |path: String, query: Vec<(&'static str, &'static str)>| {
            let stack = &stack;
            let billing = &billing;
            async move { stack.get(billing, &path, &query, Some(TOKEN)).await }
        };

        // Unknown provider, on every provider route.
        let unknown = ProviderId::new().to_string();
        for (name, template) in vigil_billing::routes()
            .iter()
            .filter(|(_, p)| p.contains("{provider_id}"))
        {
            let response = stack
                .call(
                    &billing.base,
                    method(name),
                    &fill(template, &unknown),
                    &[],
                    Some(TOKEN),
                    body_for(name).as_ref(),
                )
                .await?;
            assert_error(&response, StatusCode::NOT_FOUND, "provider_not_found");
            let response = stack
                .call(
                    &billing.base,
                    method(name),
                    &fill(template, "acme"),
                    &[],
                    Some(TOKEN),
                    body_for(name).as_ref(),
                )
                .await?;
            assert_error(&response, StatusCode::BAD_REQUEST, "invalid_provider_id");
            let response = stack
                .call(
                    &billing.base,
                    method(name),
                    &fill(template, &a),
                    &[],
                    None,
                    body_for(name).as_ref(),
                )
                .await?;
            assert_error(&response, StatusCode::UNAUTHORIZED, "unauthorized");
        }

        let inverted = vec![("from", "2025-04-01T00:00:00Z"), ("to", "2025-03-01T00:00:00Z")];
        for route in ["/usage", "/usage/series", "/usage/users", "/ledger", "/ledger.csv"] {
            assert_error(
                &get(format!("{p}{route}"), inverted.clone()).await?,
                StatusCode::BAD_REQUEST,
                "invalid_range",
            );
            assert_error(
                &get(format!("{p}{route}"), vec![("from", "last tuesday")]).await?,
                StatusCode::BAD_REQUEST,
                "invalid_time",
            );
        }
        for granularity in ["week", "HOUR", "1d"] {
            assert_error(
                &get(format!("{p}/usage/series"), vec![("granularity", granularity)]).await?,
                StatusCode::BAD_REQUEST,
                "invalid_granularity",
            );
        }
        let decade = vec![
            ("granularity", "hour"),
            ("from", "2020-01-01T00:00:00Z"),
            ("to", "2030-01-01T00:00:00Z"),
        ];
        assert_error(
            &get(format!("{p}/usage/series"), decade).await?,
            StatusCode::BAD_REQUEST,
            "range_too_large",
        );
        for route in ["/usage/users", "/statements", "/ledger"] {
            for limit in ["100000", "0", "-5", "18446744073709551616", "many"] {
                assert_error(
                    &get(format!("{p}{route}"), vec![("limit", limit)]).await?,
                    StatusCode::BAD_REQUEST,
                    "invalid_page_size",
                );
            }
            assert_error(
                &get(format!("{p}{route}"), vec![("cursor", "not-a-cursor")]).await?,
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
            );
        }
        for period in ["2025-13", "march", "2025-3"] {
            assert_error(
                &get(format!("{p}/statements/{period}"), vec![]).await?,
                StatusCode::BAD_REQUEST,
                "invalid_period",
            );
        }
        assert_error(
            &get(format!("{p}/statements/2025-02"), vec![]).await?,
            StatusCode::NOT_FOUND,
            "statement_not_found",
        );
        assert_error(
            &get(format!("{p}/rates"), vec![]).await?,
            StatusCode::NOT_FOUND,
            "rates_not_set",
        );

        // Rates: prices are decimal strings, never JSON numbers; the currency is fixed.
        let put = |body: Value| {
            let stack = &stack;
            let billing = &billing;
            let path = format!("{p}/rates");
            async move {
                stack
                    .call(&billing.base, Method::PUT, &path, &[], Some(TOKEN), Some(&body))
                    .await
            }
        };
        let good = body_for("PUT").unwrap_or_default();
        let mut float = good.clone();
        float["per_authentication"] = json!(0.05);
        assert_error(&put(float).await?, StatusCode::BAD_REQUEST, "invalid_body");
        let mut negative = good.clone();
        negative["per_sms_segment"] = json!("-0.01");
        assert_error(&put(negative).await?, StatusCode::BAD_REQUEST, "invalid_rates");
        let mut currency = good.clone();
        currency["currency"] = json!("euro");
        assert_error(&put(currency).await?, StatusCode::BAD_REQUEST, "invalid_rates");
        assert_error(
            &put(json!({"currency": "EUR"})).await?,
            StatusCode::BAD_REQUEST,
            "invalid_body",
        );
        assert_eq!(put(good.clone()).await?.0, StatusCode::OK);
        let mut dollars = good.clone();
        dollars["currency"] = json!("USD");
        assert_error(&put(dollars).await?, StatusCode::CONFLICT, "currency_change");
        let response = stack
            .http
            .put(format!("{}{p}/rates", billing.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);

        // Tokens: a bad body, a bad id, an unknown token.
        let tokens = format!("{p}/tokens");
        let response = stack
            .call(
                &billing.base,
                Method::POST,
                &tokens,
                &[],
                Some(TOKEN),
                Some(&json!({"scope": "all"})),
            )
            .await?;
        assert_error(&response, StatusCode::BAD_REQUEST, "invalid_body");
        let response = stack
            .call(
                &billing.base,
                Method::DELETE,
                &format!("{tokens}/xyz"),
                &[],
                Some(TOKEN),
                None,
            )
            .await?;
        assert_error(&response, StatusCode::BAD_REQUEST, "invalid_token_id");
        let response = stack
            .call(
                &billing.base,
                Method::DELETE,
                &format!("{tokens}/{}", "ab".repeat(16)),
                &[],
                Some(TOKEN),
                None,
            )
            .await?;
        assert_error(&response, StatusCode::NOT_FOUND, "token_not_found");
        let response = stack
            .call(
                &billing.base,
                Method::PATCH,
                &format!("{p}/rates"),
                &[],
                Some(TOKEN),
                None,
            )
            .await?;
        assert_error(&response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        billing.stop().await
    })
    .await
}

#[tokio::test]
async fn serves_the_checked_in_openapi_document_covering_every_route() -> anyhow::Result<()> {
    local(async {
        let stack = Stack::start().await?;
        let billing = Billing::start(&stack).await?;
        let response = stack
            .http
            .get(format!("{}/v1/openapi.json", billing.base))
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        let served = response.text().await?;
        let checked_in = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"))?;
        assert_eq!(served, checked_in, "the served document is the checked-in file");
        let doc: Value = serde_json::from_str(&checked_in)?;
        assert_eq!(doc["openapi"], "3.0.3");

        let routes = vigil_billing::routes();
        for (name, path) in &routes {
            let operation = &doc["paths"][path][name.to_ascii_lowercase()];
            assert!(operation.is_object(), "{name} {path} is not in openapi.json");
            assert!(
                operation["responses"].is_object(),
                "{name} {path} documents no responses"
            );
        }
        // And nothing documented that is not served.
        let documented: usize = doc["paths"]
            .as_object()
            .map(|paths| paths.values().filter_map(Value::as_object).map(|ops| ops.len()).sum())
            .unwrap_or(0);
        assert_eq!(
            documented,
            routes.len(),
            "openapi.json documents routes billing does not serve"
        );
        for (name, path) in &routes {
            let (status, body) = stack
                .call(
                    &billing.base,
                    method(name),
                    &fill(path, &ProviderId::new().to_string()),
                    &[],
                    None,
                    None,
                )
                .await?;
            assert_ne!(body["error"]["code"], "not_found", "{name} {path}: {status}");
        }
        // Every error response points at the one error schema.
        let errors = doc["components"]["schemas"]["Error"]["properties"]["error"]["required"].clone();
        assert_eq!(errors, json!(["code", "message"]));
        billing.stop().await
    })
    .await
}
