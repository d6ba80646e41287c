//! The node-request listing (`nodepool request-list`, web `/request-list`), ordered like
//! Nodepool handles requests: by `(precedence, relative_priority, sequence)`.

use super::table::{Cell, Column, Table};
use crate::model::NodeRequest;

/// The 8 columns, in order.
pub const REQUEST_COLUMNS: [Column; 8] = [
    Column::new("id", "Request ID"),
    Column::new("relative_priority", "Priority"),
    Column::new("state", "State"),
    Column::new("requestor", "Requestor"),
    Column::new("node_types", "Node Types"),
    Column::new("nodes", "Nodes"),
    Column::new("declined_by", "Declined By"),
    Column::new("event_id", "Event ID"),
];

/// Builds the request listing, sorted by [`NodeRequest::cmp_priority`].
pub fn request_list<'a, I>(requests: I) -> Table
where
    I: IntoIterator<Item = &'a NodeRequest>,
{
    let mut reqs: Vec<&NodeRequest> = requests.into_iter().collect();
    reqs.sort_by(|a, b| a.cmp_priority(b));
    let mut table = Table::with_capacity(REQUEST_COLUMNS.to_vec(), reqs.len());
    for r in reqs {
        table.push_row(vec![
            Cell::Str(r.id.to_string()),
            Cell::Int(r.relative_priority),
            Cell::from(r.state.as_str()),
            Cell::opt(r.requestor.as_deref()),
            Cell::List(r.node_types.clone()),
            Cell::List(r.nodes.iter().map(|n| n.to_string()).collect()),
            Cell::List(r.declined_by.clone()),
            Cell::opt(r.event_id.as_deref()),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeId, RequestId, RequestState};
    use serde_json::{json, Value};

    fn req(id: &str, prio: i64) -> NodeRequest {
        NodeRequest {
            id: RequestId::from(id),
            relative_priority: prio,
            node_types: vec!["label1".into()],
            requestor: Some("zuul".into()),
            event_id: Some("e1".into()),
            ..NodeRequest::default()
        }
    }

    fn sample() -> Vec<NodeRequest> {
        let mut f = req("100-0000000002", 0);
        f.state = RequestState::Fulfilled;
        f.node_types = vec!["a".into(), "b".into()];
        f.nodes = vec![NodeId::from("0000000007"), NodeId::from("0000000008")];
        f.declined_by = vec!["pw-1".into()];
        let mut m = req("900-0000000001", 0);
        m.requestor = Some("NodePool:min-ready".into());
        m.event_id = None;
        vec![m, req("200-0000000003", 0), f, req("100-0000000004", -1)]
    }

    #[test]
    fn text_sorted_by_priority() {
        let reqs = sample();
        assert_eq!(
            request_list(&reqs).render_text(),
            "+----------------+----------+-----------+--------------------+------------+-----------------------+-------------+----------+\n\
             | Request ID     | Priority | State     | Requestor          | Node Types | Nodes                 | Declined By | Event ID |\n\
             +----------------+----------+-----------+--------------------+------------+-----------------------+-------------+----------+\n\
             | 100-0000000004 | -1       | requested | zuul               | label1     |                       |             | e1       |\n\
             | 100-0000000002 | 0        | fulfilled | zuul               | a,b        | 0000000007,0000000008 | pw-1        | e1       |\n\
             | 200-0000000003 | 0        | requested | zuul               | label1     |                       |             | e1       |\n\
             | 900-0000000001 | 0        | requested | NodePool:min-ready | label1     |                       |             | None     |\n\
             +----------------+----------+-----------+--------------------+------------+-----------------------+-------------+----------+"
        );
    }

    #[test]
    fn json_types() {
        let reqs = sample();
        let v: Value = serde_json::from_str(&request_list(&reqs).render_json()).unwrap();
        let r = &v[1];
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "id",
                "relative_priority",
                "state",
                "requestor",
                "node_types",
                "nodes",
                "declined_by",
                "event_id"
            ]
        );
        assert_eq!(r["relative_priority"], json!(0));
        assert_eq!(r["nodes"], json!(["0000000007", "0000000008"]));
        assert_eq!(r["declined_by"], json!(["pw-1"]));
        assert_eq!(v[3]["event_id"], Value::Null);
    }
}
