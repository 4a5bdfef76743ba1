// RabbitMQ's Java client (5.x) against Warren: hello world and publisher confirms.
// Usage: java -cp amqp-client.jar:slf4j-api.jar:. HelloConfirms PORT
import com.rabbitmq.client.*;
import java.nio.charset.StandardCharsets;

public class HelloConfirms {
    public static void main(String[] args) throws Exception {
        ConnectionFactory f = new ConnectionFactory();
        f.setHost("127.0.0.1");
        f.setPort(Integer.parseInt(args[0]));
        try (Connection conn = f.newConnection()) {
            // Not in the try-with-resources: the 404 below closes it on the broker's side.
            Channel ch = conn.createChannel();
            ch.queueDeclare("java_hello", false, false, false, null);
            ch.basicPublish("", "java_hello", null, "Hello World!".getBytes(StandardCharsets.UTF_8));
            GetResponse r = ch.basicGet("java_hello", true);
            if (r == null || !new String(r.getBody(), StandardCharsets.UTF_8).equals("Hello World!")) {
                throw new IllegalStateException("hello world round trip failed: " + r);
            }
            System.out.println("java: hello world ... ok");

            ch.confirmSelect();
            ch.queueDeclare("java_confirms", true, false, false, null);
            for (int i = 0; i < 1000; i++) {
                ch.basicPublish("", "java_confirms", MessageProperties.PERSISTENT_TEXT_PLAIN,
                        ("m" + i).getBytes(StandardCharsets.UTF_8));
            }
            ch.waitForConfirmsOrDie(10_000);
            long n = ch.messageCount("java_confirms");
            if (n != 1000) {
                throw new IllegalStateException("expected 1000 messages, found " + n);
            }
            System.out.println("java: 1000 publisher confirms ... ok");
            try {
                ch.queueDeclarePassive("java_missing");
                throw new IllegalStateException("passive declare of a missing queue succeeded");
            } catch (java.io.IOException e) {
                ShutdownSignalException s = (ShutdownSignalException) e.getCause();
                AMQP.Channel.Close close = (AMQP.Channel.Close) s.getReason();
                if (close.getReplyCode() != 404) {
                    throw new IllegalStateException("expected 404, got " + close.getReplyCode());
                }
                System.out.println("java: 404 NOT_FOUND on passive declare ... ok");
            }
        }
    }
}
