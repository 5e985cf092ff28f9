WITH ev AS (SELECT "customer_id" AS __key, _event_time_us AS __et, _seq AS __seq, _ingested_at_us AS __ing, "amount" AS "v_amount", "flag" AS "v_flag", "item" AS "v_item", "kind" AS "v_kind", "price" AS "v_price", "qty" AS "v_qty", epoch_us("seen") AS "v_seen" FROM events WHERE "customer_id" IS NOT NULL AND ((("kind" <> 'skip') OR ("kind" IS NULL)) AND (NOT ("item" IN ('bot'))))),
t AS (SELECT *, ((__et - 1) - (((__et - 1) % 5000000) + 5000000) % 5000000) // 5000000 AS __k FROM ev WHERE __et >= -4611686018427387904 AND __et < 4611686018427387904 AND __seq <= 1000)
SELECT __key, __k, count(*) FILTER (WHERE TRUE) AS p0, count(*) FILTER (WHERE TRUE) AS p1, count(*) FILTER (WHERE TRUE) AS p2, arg_max(struct_pack(t := __et, s := __seq, v := "v_item"), (CAST(__et AS HUGEINT) * 1000000000000 + __seq)) FILTER (WHERE "v_item" IS NOT NULL) AS p3, arg_max(struct_pack(t := __et, s := __seq, v := "v_seen"), (CAST(__et AS HUGEINT) * 1000000000000 + __seq)) FILTER (WHERE "v_seen" IS NOT NULL) AS p4
FROM t WHERE __k >= 354464580
GROUP BY __key, __k
ORDER BY __key, __k
